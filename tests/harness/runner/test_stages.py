"""`harness train sft` as a real subprocess: a complete stage directory that really learned."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from harness.config.schema import ModelSpec
from harness.data.models import load_model
from harness.evals.toy import toy_eval

CONFIG = """model: {path: toy}
data:
  - {source: "toy:sft_lookup", size: 2000, seed: 0}
packing: none
loss_mask: assistant
max_length: 128
lr: 2.0e-3
batch_size: 64
micro_batch_size: 64
max_steps: 100
warmup_ratio: 0.05
log_every: 20
threads: 2
"""


def harness(*args, **kw):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def sft_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    (root / "sft.yaml").write_text(CONFIG)
    out = root / "stage"
    result = harness("train", "sft", str(root / "sft.yaml"), "--out", str(out), "seed=0")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_stage_directory_is_complete(sft_stage):
    assert (sft_stage / "DONE").exists() and (sft_stage / "model" / "config.json").exists()
    manifest = json.loads((sft_stage / "manifest.json").read_text())
    for key in ("config", "config_hash", "data_fingerprint", "versions", "git_sha", "seconds", "tokens_seen", "final_loss"):
        assert key in manifest, key
    assert manifest["steps"] == 100 and manifest["tokens_seen"] > 0 and manifest["versions"]["torch"].startswith("2.13")
    curves = pd.read_parquet(sft_stage / "curves.parquet")
    assert list(curves.columns) == ["step", "name", "value"] and (curves["name"] == "loss").sum() == 5


def test_short_sft_raises_verifier_accuracy(sft_stage, toy_model_dir):
    base, tok = load_model(ModelSpec(path=str(toy_model_dir)), for_training=False)
    tuned, _ = load_model(ModelSpec(path=str(sft_stage)), for_training=False)
    before = toy_eval(base, tok, n=200, dataset="eval_lookup")[0][0]["value"]
    after = toy_eval(tuned, tok, n=200, dataset="eval_lookup")[0][0]["value"]
    assert before < 0.05 and after >= before + 0.15, (before, after)


def test_done_stage_is_reused_not_retrained(sft_stage):
    before = (sft_stage / "manifest.json").read_text()
    result = harness("train", "sft", str(sft_stage.parent / "sft.yaml"), "--out", str(sft_stage))
    assert result.returncode == 0 and (sft_stage / "manifest.json").read_text() == before


def test_bad_config_is_one_line_error_and_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text(CONFIG.replace("packing: none", "packing: sideways"))
    result = harness("train", "sft", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: {tmp_path / 'bad.yaml'}:4: packing:")
    assert not (tmp_path / "o").exists()
