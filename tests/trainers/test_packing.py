"""Padding-free preference batches: TRL's tokenization, packing invariants, and per-sequence
log-probs / loss of the packed forward against TRL's padded forward."""
import copy

import pytest
import torch
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from harness.toylab.datasets import build_toy
from trainers.common import device_args
from trainers.losses import LossSpec, PairLogps, dpo_loss
from trainers.packing import (best_fit_decreasing, ensure_fused_lm_head, pack_pairs, packed_attention,
                              packed_sequence_logps, tokenize_pairs)

PAIRS = build_toy("prefs", 12, seed=3) + [
    {"prompt": "reverse: a b c d e f", "chosen": "f e d c b a", "rejected": "a b c d e f, that is the answer", "source": "x"},
]


def _trl_tokenized(model_dir, tokenizer, pairs, tmp_path):
    """The rows exactly as TRL's DPOTrainer tokenizes conversational pairs."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p["prompt"]}],
                               "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    args = DPOConfig(str(tmp_path), **device_args(), max_length=64, dataset_num_proc=None)
    return DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer).train_dataset


def test_tokenization_equals_trl(toy_model_dir, toy_tokenizer, tmp_path):
    ours, kept = tokenize_pairs(toy_tokenizer, PAIRS, max_length=64)
    trl_rows = _trl_tokenized(toy_model_dir, toy_tokenizer, PAIRS, tmp_path)
    assert kept == list(range(len(PAIRS))) and len(trl_rows) == len(ours)
    for mine, theirs in zip(ours, trl_rows):
        assert mine == {k: theirs[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
    assert toy_tokenizer.decode(ours[0]["chosen_ids"]).startswith(PAIRS[0]["chosen"] + "<|im_end|>")


def test_pairs_whose_prompt_fills_max_length_are_dropped(toy_tokenizer):
    rows, kept = tokenize_pairs(toy_tokenizer, PAIRS, max_length=12)
    lengths = [len(r["prompt_ids"]) for r in tokenize_pairs(toy_tokenizer, PAIRS, 10_000)[0]]
    assert kept == [i for i, n in enumerate(lengths) if n < 12] and len(rows) == len(kept) < len(PAIRS)


def test_packed_rows_hold_every_sequence_once_with_restarting_positions(toy_tokenizer):
    rows, _ = tokenize_pairs(toy_tokenizer, PAIRS[:5], 64)
    batch = pack_pairs(rows, toy_tokenizer.pad_token_id, max_length=64, row_length=70)
    n = 2 * len(rows)
    assert batch["input_ids"].shape[1] <= 70 and batch["completion_lengths"].shape == (n,)
    expected = [r["prompt_ids"] + r["chosen_ids"] for r in rows] + [r["prompt_ids"] + r["rejected_ids"] for r in rows]
    for i, ids in enumerate(expected):
        where = batch["seq_index"] == i
        row = int(where.any(dim=1).nonzero())
        assert batch["input_ids"][row][where[row]].tolist() == ids
        assert batch["position_ids"][row][where[row]].tolist() == list(range(len(ids)))
        assert int(batch["completion_mask"][row][where[row]].sum()) == batch["completion_lengths"][i] == len(ids) - len(rows[i % len(rows)]["prompt_ids"])
    assert int(batch["num_tokens"]) == sum(map(len, expected))
    pad = batch["seq_index"] == n
    assert (batch["input_ids"][pad] == toy_tokenizer.pad_token_id).all() and not batch["completion_mask"][pad].any()


def test_truncation_keeps_the_start(toy_tokenizer):
    rows, _ = tokenize_pairs(toy_tokenizer, PAIRS[:2], 64)
    batch = pack_pairs(rows, toy_tokenizer.pad_token_id, max_length=15)
    first = batch["input_ids"][batch["seq_index"] == 0].tolist()
    assert first == (rows[0]["prompt_ids"] + rows[0]["chosen_ids"])[:15]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=30), st.integers(1, 120))
def test_best_fit_decreasing_bins_respect_capacity(lengths, capacity):
    bins = best_fit_decreasing(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    limit = max(capacity, max(lengths))
    assert all(sum(lengths[i] for i in b) <= limit for b in bins)


def _padded_sequence_logps(model, rows, pad_token_id, max_length):
    """TRL's padded forward: its collator, the attention mask, the fused LM head, sums per row."""
    batch = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)(copy.deepcopy(rows))
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                fused_lm_head=True, use_cache=False)
    return out.log_probs.sum(dim=1), batch["completion_mask"].sum(dim=1)


@pytest.mark.parametrize("max_length,row_length", [(64, None), (64, 80), (24, None)])
def test_packed_logps_and_loss_equal_padded_forward(toy_model, toy_tokenizer, max_length, row_length):
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial model: perturb the seeded init so log-probs differ per token
        for p in toy_model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    # float64: in float32 a sum of ~100 log-probs (about -120) carries ~1.5e-5 of rounding (1 ulp),
    # which would make a 1e-5 tolerance test the summation order, not the packing.
    toy_model.double()
    rows, _ = tokenize_pairs(toy_tokenizer, PAIRS, max_length)
    ensure_fused_lm_head(toy_model)
    toy_model.eval()
    with torch.no_grad():
        padded, lengths = _padded_sequence_logps(toy_model, rows, toy_tokenizer.pad_token_id, max_length)
        batch = pack_pairs(rows, toy_tokenizer.pad_token_id, max_length, row_length)
        with packed_attention(toy_model):
            packed, _ = packed_sequence_logps(toy_model, batch)
    assert torch.equal(batch["completion_lengths"], lengths)
    assert (packed - padded).abs().max().item() < 1e-5
    b = len(rows)
    ref = padded.detach() + torch.linspace(-2, 2, 2 * b)  # any fixed reference values
    for spec in (LossSpec("sigmoid", 0.1), LossSpec("ipo", 0.1), LossSpec("hinge", 0.5), LossSpec("sigmoid", 0.1, rpo_alpha=1.0)):
        losses = [dpo_loss(PairLogps(x[:b], x[b:], ref[:b], ref[b:], lengths[:b], lengths[b:]), spec) for x in (padded, packed)]
        assert abs(losses[0].item() - losses[1].item()) < 1e-5, spec
