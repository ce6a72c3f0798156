"""Resolve a ModelSpec (`toy`, hub id or local dir) into (model, tokenizer), and hash weights."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from harness.config.loader import ConfigError

log = logging.getLogger(__name__)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_model_path(path: str) -> str:
    if path == "toy":
        from harness.toylab.build import toy_base_model_dir

        return str(toy_base_model_dir())
    local = Path(path).expanduser()
    if local.exists():
        if local.is_dir() and (local / "model").is_dir() and not (local / "config.json").exists():
            local = local / "model"  # a stage directory: its model lives in model/
        if not local.is_dir() or not (local / "config.json").exists():
            raise ConfigError("not a model directory (no config.json)", file=str(path))
        return str(local)
    return path  # a hub id


def load_model(spec, for_training: bool = True):
    """(model, tokenizer) for a ModelSpec-like object (path, dtype, trust_remote_code)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec.path)
    if spec.trust_remote_code:
        log.warning("trust_remote_code is ON for %s (set explicitly in the config)", spec.path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, spec.dtype), trust_remote_code=spec.trust_remote_code,
            attn_implementation=spec.attn_implementation or "sdpa",
        )
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load model: {' '.join(str(err).split())[:300]}", file=str(spec.path)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.train(for_training)
    return model, tokenizer


def weights_hash(model_dir: str | Path) -> str:
    """Hash of the weight files: the identity of a model, whatever config produced it."""
    model_dir = Path(resolve_model_path(str(model_dir)))
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.name in WEIGHT_FILES or p.suffix == ".safetensors")
    if not files:
        raise ConfigError("no weight files", file=str(model_dir))
    for file in files:
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]
