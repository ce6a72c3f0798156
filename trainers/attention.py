"""Per-segment ("varlen") attention for packed rows on CPU.

transformers isolates packed sequences (position_ids restarting at 0, no attention mask) with a
dense block-diagonal mask: O(row_len^2) work for a row of many short sequences. This attention
function attends within each segment only, O(sum seg_len^2), like flash-attn's varlen kernel.
Registered under the name `segment_sdpa` in transformers' AttentionInterface. transformers
builds no mask for names it does not know, so segments are read from `position_ids`.

Only use it for right-padded or padding-free training batches: with no mask, left padding
would be attended to.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

NAME = "segment_sdpa"


def segment_lengths(position_ids: torch.Tensor) -> list[list[int]]:
    """Per row, the lengths of the runs whose position ids restart at 0."""
    out = []
    for row in position_ids.tolist():
        starts = [i for i, p in enumerate(row) if p == 0 or i == 0]
        out.append([b - a for a, b in zip(starts, starts[1:] + [len(row)])])
    return out


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def segment_sdpa_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """query/key/value: [batch, heads, seq, dim]. Returns ([batch, seq, heads, dim], None)."""
    groups = query.shape[1] // key.shape[1]
    key, value = _expand_kv(key, groups), _expand_kv(value, groups)
    position_ids = kwargs.get("position_ids")
    if position_ids is None or position_ids.shape[-1] != query.shape[2]:
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling, dropout_p=dropout)
        return out.transpose(1, 2).contiguous(), None
    position_ids = position_ids.expand(query.shape[0], -1)
    rows = []
    for b, lengths in enumerate(segment_lengths(position_ids)):
        q_parts = query[b:b + 1].split(lengths, dim=2)
        k_parts = key[b:b + 1].split(lengths, dim=2)
        v_parts = value[b:b + 1].split(lengths, dim=2)
        parts = [
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, dropout_p=dropout)
            for q, k, v in zip(q_parts, k_parts, v_parts)
        ]
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, segment_sdpa_forward)


def packed_attention_implementation() -> str:
    """flash-attn's varlen kernel on GPU when installed, else per-segment SDPA."""
    if torch.cuda.is_available():
        try:
            import flash_attn  # noqa: F401  (optional `gpu` extra)
            return "flash_attention_2"
        except ImportError:
            pass
    return NAME
