"""Padding-free preference batches: tokenize pairs, pack chosen/rejected sequences into rows,
and sum per-sequence completion log-probs from the packed rows.

A micro-batch of B pairs holds 2B sequences (prompt+chosen, then prompt+rejected, TRL's order).
They are packed best-fit-decreasing into rows of at most `row_length` positions, with
`position_ids` restarting at 0 for every sequence. With per-segment attention (`segment_sdpa` on
CPU, flash-attn varlen on GPU) each sequence attends only to itself, so attention cost stays per
sequence and no position is spent on padding, except the unused tail of a row.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import add_fused_lm_head

from trainers.attention import packed_attention_implementation

IGNORE = -100


# --- tokenization (TRL 1.16's conversational DPO tokenization) -----------------------------------

def _chat_ids(tokenizer, messages: list[dict], **kwargs) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, pair: dict) -> dict[str, list[int]]:
    """prompt as a user turn (with the generation prompt), chosen/rejected as the assistant turn.
    The completion starts where prompt and prompt+completion diverge, as in TRL."""
    prompt = [{"role": "user", "content": pair["prompt"]}]
    prompt_ids = _chat_ids(tokenizer, prompt, add_generation_prompt=True)
    chosen = _chat_ids(tokenizer, prompt + [{"role": "assistant", "content": pair["chosen"]}])
    rejected = _chat_ids(tokenizer, prompt + [{"role": "assistant", "content": pair["rejected"]}])
    cut = min(_common_prefix(prompt_ids, chosen), _common_prefix(prompt_ids, rejected))
    return {"prompt_ids": prompt_ids[:cut], "chosen_ids": chosen[cut:], "rejected_ids": rejected[cut:]}


def tokenize_pairs(tokenizer, pairs: list[dict], max_length: int) -> tuple[list[dict], list[int]]:
    """Tokenized rows and the indices of `pairs` they come from. A pair whose prompt alone fills
    `max_length` has no completion token left after truncation and is dropped, as TRL does."""
    rows, kept = [], []
    for i, pair in enumerate(pairs):
        row = tokenize_pair(tokenizer, pair)
        if len(row["prompt_ids"]) < max_length:
            rows.append(row)
            kept.append(i)
    return rows, kept


# --- packing ---------------------------------------------------------------------------------------

@dataclass
class Sequence:
    ids: list[int]
    completion: list[int]  # 1 where the token is a completion token


def pair_sequences(examples: list[dict], max_length: int | None) -> list[Sequence]:
    """2B sequences: prompt+chosen for every pair, then prompt+rejected; truncated keep-start."""
    out = []
    for side in ("chosen_ids", "rejected_ids"):
        for ex in examples:
            ids = ex["prompt_ids"] + ex[side]
            completion = [0] * len(ex["prompt_ids"]) + [1] * len(ex[side])
            if max_length is not None:
                ids, completion = ids[:max_length], completion[:max_length]
            out.append(Sequence(ids, completion))
    return out


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of sequence indices, each bin's total length <= capacity (longest sequence if larger)."""
    capacity = max(capacity, max(lengths))
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [b for b in range(len(bins)) if free[b] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: free[b])
        else:
            bins.append([])
            free.append(capacity)
            b = len(bins) - 1
        bins[b].append(i)
        free[b] -= lengths[i]
    return bins


@dataclass
class PackedPairCollator:
    """Collates tokenized pairs into packed rows (the padding-free counterpart of TRL's
    DataCollatorForPreference). `row_length=None` packs the whole micro-batch into one row."""

    pad_token_id: int
    max_length: int | None = None
    row_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pack_pairs(examples, self.pad_token_id, self.max_length, self.row_length)


def pack_pairs(examples: list[dict], pad_token_id: int, max_length: int | None = None,
               row_length: int | None = None) -> dict[str, torch.Tensor]:
    """Packed rows for a micro-batch of tokenized pairs.

    Returns input_ids, position_ids, completion_mask and seq_index ([rows, width]; seq_index is the
    sequence each position belongs to, 2B for row padding), completion_lengths [2B],
    num_tokens (real tokens) and, when the examples carry them, ref_chosen_logps/ref_rejected_logps.
    """
    seqs = pair_sequences(examples, max_length)
    lengths = [len(s.ids) for s in seqs]
    bins = best_fit_decreasing(lengths, row_length or sum(lengths))
    width = max(sum(lengths[i] for i in b) for b in bins)
    n = len(seqs)
    input_ids = torch.full((len(bins), width), pad_token_id, dtype=torch.long)
    completion = torch.zeros((len(bins), width), dtype=torch.long)
    seq_index = torch.full((len(bins), width), n, dtype=torch.long)
    position_ids = torch.zeros((len(bins), width), dtype=torch.long)
    for r, members in enumerate(bins):
        start = 0
        for i in sorted(members):
            end = start + lengths[i]
            input_ids[r, start:end] = torch.tensor(seqs[i].ids)
            completion[r, start:end] = torch.tensor(seqs[i].completion)
            seq_index[r, start:end] = i
            position_ids[r, start:end] = torch.arange(lengths[i])
            start = end
        position_ids[r, start:] = torch.arange(width - start)  # tail padding: its own segment
    out = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "completion_mask": completion,
        "seq_index": seq_index,
        "completion_lengths": torch.tensor([sum(s.completion) for s in seqs], dtype=torch.long),
        "num_tokens": torch.tensor(sum(lengths)),
    }
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        if key in examples[0]:
            out[key] = torch.tensor([ex[key] for ex in examples], dtype=torch.float32)
    return out


# --- per-sequence log-probs from packed rows ------------------------------------------------------

def ensure_fused_lm_head(model) -> None:
    """TRL's fused LM head: per-token log-probs without materializing the logits (patched once)."""
    if not getattr(model, "_has_fused_lm_head", False):
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        model._has_fused_lm_head = True


@contextlib.contextmanager
def packed_attention(model):
    """Per-segment attention and no KV cache while packed rows are in use (a cache lets packed
    sequences attend to each other)."""
    before_attn, before_cache = model.config._attn_implementation, model.config.use_cache
    model.set_attn_implementation(packed_attention_implementation())
    model.config.use_cache = False
    try:
        yield model
    finally:
        model.set_attn_implementation(before_attn)
        model.config.use_cache = before_cache


def packed_forward(model, batch: dict[str, torch.Tensor]):
    """Forward the packed rows through the fused LM head; per-token log-probs of completion tokens
    (0 elsewhere), shifted: column t scores token t+1."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE)
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=labels,
                 fused_lm_head=True, use_cache=False)


def sequence_sums(per_token: torch.Tensor, seq_index: torch.Tensor, n_sequences: int) -> torch.Tensor:
    """Sum shifted per-token values [rows, width-1] into one value per sequence. Position t+1's
    token is scored at column t, so the value at column t belongs to the sequence of position t+1."""
    targets = seq_index[:, 1:].to(per_token.device).reshape(-1)
    sums = per_token.new_zeros(n_sequences + 1).index_add(0, targets, per_token.reshape(-1))
    return sums[:n_sequences]  # the last bucket collects row padding


def packed_sequence_logps(model, batch: dict[str, torch.Tensor]):
    """(summed completion log-probs per sequence [2B], the fused-head outputs)."""
    outputs = packed_forward(model, batch)
    n = len(batch["completion_lengths"])
    return sequence_sums(outputs.log_probs, batch["seq_index"], n), outputs
