"""`harness train dpo`: the real CLI in a subprocess leaves a complete stage directory, and a second
stage over the same reference weights and data reuses the reference log-probs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[3]


def _isolated_cache(tmp_path: Path) -> dict:
    """A fresh HARNESS_CACHE (so the reference cache starts empty) that reuses the built toy model."""
    from harness.toylab.build import cache_root, toy_base_model_dir

    toy_base_model_dir()
    fresh = tmp_path / "cache"
    fresh.mkdir()
    for kind in ("toy-base", "toy-tokenizer"):
        (fresh / kind).symlink_to(cache_root() / kind)
    return {**os.environ, "HARNESS_CACHE": str(fresh)}


def _train(out: Path, env: dict, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.cli", "train", "dpo", "ablations/toy/dpo.yaml", "model.path=toy",
           "data.0.size=24", "max_steps=2", "batch_size=8", "micro_batch_size=8", "log_every=1", *overrides,
           "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def test_train_dpo_writes_a_stage_dir_and_shares_the_reference_cache(tmp_path):
    env = _isolated_cache(tmp_path)
    first = _train(tmp_path / "a", env)
    assert first.returncode == 0, first.stderr[-2000:]
    stage = tmp_path / "a"
    assert (stage / "DONE").exists() and (stage / "model" / "config.json").exists()
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["kind"] == "dpo" and manifest["steps"] == 2 and manifest["pairs_used"] == 24
    assert manifest["ref_cache_hit"] is False and manifest["config"]["beta"] == 0.1
    curves = pd.read_parquet(stage / "curves.parquet")
    assert list(curves.columns) == ["step", "name", "value"]
    assert (curves["name"].str.startswith("gamma_ref/")).sum() == 24 + 1 and "rewards/margins" in set(curves["name"])
    assert manifest["mean_gamma_ref"] == curves.loc[curves["name"] == "gamma_ref/mean", "value"].item()

    second = _train(tmp_path / "b", env, "beta=0.5")  # another point of a β sweep: same weights, same pairs
    assert second.returncode == 0, second.stderr[-2000:]
    again = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert again["ref_cache_hit"] is True and again["reference_key"] == manifest["reference_key"]
    assert again["mean_gamma_ref"] == pytest.approx(5 * manifest["mean_gamma_ref"])  # γ scales with β, same reference log-probs


def test_bad_config_is_one_line_error(tmp_path):
    bad = _train(tmp_path / "c", dict(os.environ), "loss_type=ipo", "label_smoothing=0.1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "label_smoothing" in bad.stderr


def test_reference_identity_is_the_weights_not_the_name(toy_model_dir, toy_model):
    import torch

    from harness.runner.preference_stages import weights_identity

    by_files = weights_identity(str(toy_model_dir), toy_model)
    assert by_files == weights_identity("toy", toy_model)  # another name, the same weights
    by_tensors = weights_identity("org/not-a-local-dir", toy_model)  # a hub id: hash the loaded tensors
    with torch.no_grad():
        next(toy_model.parameters())[0, 0] += 1.0
    assert by_tensors.startswith("tensors-") and weights_identity("org/not-a-local-dir", toy_model) != by_tensors
