"""Reference log-probs, computed once and cached on disk.

The key hashes what the numbers depend on: the reference WEIGHTS (an identity string the caller
computes from the weight files), the exact pairs in order, max_length, the chat template, the
tokenizer and the dtype. A config hash is not enough: two configs can name the same weights, and
one path can hold different weights over time. So trials that share a reference share the file,
and a β sweep does one reference pass.

A file is written to a temporary name, fsynced and renamed, so a killed writer leaves no partial
file under the final name. Files carry their key, row count and a checksum of the values; a file
that fails any check is treated as a miss and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from trainers.packing import ensure_fused_lm_head, pack_pairs, packed_attention, packed_sequence_logps

FORMAT = 1


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def pairs_fingerprint(pairs: list[dict]) -> str:
    """The data subset, in order: only the fields that reach the model."""
    return _sha(*(json.dumps([p["prompt"], p["chosen"], p["rejected"]], ensure_ascii=False) for p in pairs))


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return _sha(vocab, json.dumps(tokenizer.all_special_tokens))


def cache_key(reference_key: str, pairs: list[dict], max_length: int | None, tokenizer, dtype: str) -> str:
    return _sha(f"format={FORMAT}", f"reference={reference_key}", f"data={pairs_fingerprint(pairs)}",
                f"max_length={max_length}", f"template={tokenizer.chat_template or ''}",
                f"tokenizer={tokenizer_fingerprint(tokenizer)}", f"dtype={dtype}")[:24]


def _values_checksum(chosen: list[float], rejected: list[float]) -> str:
    return _sha(json.dumps(chosen), json.dumps(rejected))


class RefLogpCache:
    """One JSON file per key under `root` (None: no caching)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str, n_rows: int) -> tuple[list[float], list[float]] | None:
        """The cached values, or None when missing, partial, corrupt or for other rows."""
        if self.root is None or not self.path(key).exists():
            return None
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
            chosen, rejected = data["chosen"], data["rejected"]
            ok = (data["format"] == FORMAT and data["key"] == key and len(chosen) == len(rejected) == n_rows
                  and data["checksum"] == _values_checksum(chosen, rejected))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (chosen, rejected) if ok else None

    def store(self, key: str, chosen: list[float], rejected: list[float]) -> Path | None:
        if self.root is None:
            return None
        payload = {"format": FORMAT, "key": key, "n_rows": len(chosen), "chosen": chosen, "rejected": rejected,
                   "checksum": _values_checksum(chosen, rejected)}
        atomic_write_text(self.path(key), json.dumps(payload))
        return self.path(key)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a sibling temp file, fsync, rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     encoding="utf-8", delete=False) as tmp:
        try:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def length_batches(rows: list[dict], token_budget: int) -> list[list[int]]:
    """Row indices in length order, grouped up to `token_budget` tokens per batch (inference only)."""
    size = [2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows]
    batches, current, used = [], [], 0
    for i in sorted(range(len(rows)), key=lambda i: size[i]):
        if current and used + size[i] > token_budget:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += size[i]
    return batches + ([current] if current else [])


@torch.no_grad()
def compute_reference_logps(model, rows: list[dict], pad_token_id: int, max_length: int | None,
                            token_budget: int = 16384) -> tuple[list[float], list[float]]:
    """Summed completion log-probs of chosen and rejected for every tokenized row, padding-free."""
    ensure_fused_lm_head(model)
    chosen, rejected = [0.0] * len(rows), [0.0] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with packed_attention(model):
            for batch_rows in length_batches(rows, token_budget):
                batch = pack_pairs([rows[i] for i in batch_rows], pad_token_id, max_length)
                batch = {k: v.to(model.device) for k, v in batch.items()}
                logps, _ = packed_sequence_logps(model, batch)
                logps = logps.double().cpu().tolist()
                for j, i in enumerate(batch_rows):
                    chosen[i], rejected[i] = logps[j], logps[len(batch_rows) + j]
    finally:
        model.train(was_training)
    return chosen, rejected


def reference_logps(model, rows: list[dict], pad_token_id: int, max_length: int | None,
                    cache: RefLogpCache, key: str) -> tuple[list[float], list[float], bool]:
    """(chosen, rejected, cache_hit): from the cache, else computed with `model` and stored."""
    cached = cache.load(key, len(rows))
    if cached is not None:
        return cached[0], cached[1], True
    chosen, rejected = compute_reference_logps(model, rows, pad_token_id, max_length)
    cache.store(key, chosen, rejected)
    return chosen, rejected, False
