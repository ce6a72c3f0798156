"""`harness effects` on a study the real runner produced: a miniature of ablations/toy/sft_effects_seeds.yaml
(loss mask x 2 seeds, real stage subprocesses, ingested by `harness run`), reported through the command line.

The SFT stages start from the cached, partly trained toy model of `harness bench search`, so a few steps
give accuracies above zero that differ between trials: from a random init every trial scores 0, and the
importance evaluators have nothing to rank. The direction of the miniature's effect is not asserted."""
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from latex_check import compile_latex

pytestmark = pytest.mark.slow

MASK = "sft.loss_mask"
EVALUATORS = {"fANOVA", "PED-ANOVA (Optuna default)"}

GRID = """study: mini_effects
results_dir: {results}
method: none
online: false
execution: {{workers: 2, threads_per_worker: 1}}
pipeline:
  sft: {{model: {{path: "{start}"}}, data: [{{source: "toy:sft_mix", size: 256, seed: 0}}], packing: none,
        lr: 5.0e-4, batch_size: 16, micro_batch_size: 16, max_steps: 8, max_length: 128, log_every: 4}}
  eval: {{suite: [toy], limit: 60}}
grid:
  sft.loss_mask: [all, assistant]
seeds: [0, 1]
effects:
  reference: {{sft.loss_mask: all}}
"""


def harness(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory):
    """The grid file of a finished, ingested 4-trial study (2 workers, 1 thread each)."""
    from harness.bench.search import sft_start

    root = tmp_path_factory.mktemp("mini_effects")
    grid = root / "mini_effects.yaml"
    grid.write_text(GRID.format(results=root / "results", start=sft_start()))
    run = harness("run", str(grid), "--json", cwd=root)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["states"] == {"complete": 4}, summary
    return grid


def effects(grid, fmt: str, *extra: str) -> str:
    done = harness("effects", str(grid), "--format", fmt, "--n-boot", "500", *extra, cwd=grid.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "A new study created" not in done.stderr  # importance's scratch Optuna study stays quiet
    return done.stdout


def test_json_report_pairs_on_seed_with_a_ci_costs_and_importance(mini_study):
    out = json.loads(effects(mini_study, "json"))
    assert out["study"] == "mini_effects"
    rows = [r for r in out["effects"] if r["metric"] == "accuracy" and r["axis"] == MASK]
    assert len(rows) == 1
    mask = rows[0]
    assert (mask["reference"], mask["level"]) == ("all", "assistant")
    assert mask["n_pairs"] == 2 and mask["paired_on"] == "seed" and mask["excluded"] == 0
    assert mask["ci_low"] <= mask["mean_diff"] <= mask["ci_high"]
    assert mask["bench_se"] > 0 and mask["seed_sd"] is not None  # json null: NaN
    assert isinstance(mask["within_noise"], bool) and mask["verdict"] in ("effect", "within noise")
    assert mask["cost_ref"] > 0 and mask["cost_level"] > 0
    assert out["cost"]["unit"] == "CPU-s" and out["cost"]["trials"] == 4 and out["cost"]["spent"] > 0
    levels = pd.DataFrame(out["level_costs"]).set_index("level")
    assert set(levels.index) == {"all", "assistant"} and (levels["trials"] == 2).all() and (levels["per_trial"] > 0).all()
    importance = pd.DataFrame(out["importance"])
    accuracy = importance[importance["metric"] == "accuracy"]
    assert set(accuracy["evaluator"].dropna()) == EVALUATORS, accuracy.to_string()
    assert set(accuracy["axis"].dropna()) == {MASK, "seed"}


def test_md_and_latex_render(mini_study, tmp_path):
    md = effects(mini_study, "md")
    assert "**Main effects on toy/accuracy (study mini_effects)**" in md
    assert "| sft.loss_mask | assistant vs all |" in md and "Cost per axis level" in md
    assert "fANOVA importance" in md and "within noise:" in md and "sft.loss_mask: reference level all" in md
    tex = effects(mini_study, "latex", "--no-importance")
    assert r"\begin{tabular}" in tex and r"$\Delta$ mean" in tex and "sft.loss\\_mask" in tex
    if shutil.which("pdflatex"):
        assert compile_latex(tex, tmp_path).stat().st_size > 1000
