"""`harness effects`: the report on a real ingested results store (grid-file levels, failed trials, costs),
its md/csv/json/LaTeX renderings (LaTeX compiled with pdflatex), and the command line."""
import io
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from latex_check import compile_latex

from harness.report.effects import Results
from harness.report.effects_report import build_report, make_effects, render

MASK, PACKING = "sft.loss_mask", "sft.packing"


def row(frame, axis):
    return frame[frame["axis"] == axis].iloc[0]


LION_GRID = """study: lion_toy
results_dir: {results}
pipeline: {{sft: {{}}, dpo: {{}}}}
grid:
  sft.packing: [none, isolated]
  sft.loss_mask: [all, assistant]
  dpo.beta: [0.1, 0.5, 1.0, 2.0]
seeds: [0, 1]
"""


def test_effects_on_the_ingested_lion_study(ingested_tree, tmp_path):
    """lion_toy plants: mask +0.25, packing +0.05, β 0.5 −0.10 vs 0.1, seed +0.01 (no other noise),
    one failed trial (β 1.0) and one running trial; toy SE ≈ 0.03 per eval. The grid file
    gives the study, the results dir and the levels' order (reference = first listed)."""
    grid = tmp_path / "lion.yaml"
    grid.write_text(LION_GRID.format(results=ingested_tree.results))
    out = json.loads(make_effects(str(grid), benchmark="toy", fmt="json", n_boot=500, importance=False))
    effects = pd.DataFrame(out["effects"])
    acc = effects[effects["metric"] == "accuracy"]
    mask, packing = row(acc, MASK), row(acc, PACKING)
    assert mask["mean_diff"] == pytest.approx(0.25) and mask["n_pairs"] == 8 and mask["verdict"] == "effect"
    assert packing["mean_diff"] == pytest.approx(0.05) and packing["verdict"] == "within noise"
    beta = acc[acc["axis"] == "dpo.beta"].set_index("level")
    assert beta.loc[0.5, "mean_diff"] == pytest.approx(-0.10) and beta.loc[0.5, "verdict"] == "effect"
    assert beta.loc[1.0, "n_pairs"] == 0 and beta.loc[1.0, "excluded_failed"] == 1 and beta.loc[1.0, "verdict"] == "no pairs"
    assert out["cost"]["unit"] == "CPU-s" and out["cost"]["saved"] > 0  # the SFT under both β is shared
    assert mask["cost_level"] > 0


def test_text_formats_and_interactions(ingested_tree):
    md = make_effects(study="lion_toy", benchmark="toy", fmt="md", results_dir=ingested_tree.results, n_boot=200,
                      interactions=[(PACKING, MASK)], importance=False)
    assert "Main effects on toy/accuracy" in md and "packing × loss_mask" not in md
    assert f"{PACKING} × {MASK}" in md and "interaction contrasts" in md and "within noise:" in md
    csv = make_effects(study="lion_toy", benchmark="toy", fmt="csv", results_dir=ingested_tree.results, n_boot=200)
    frame = pd.read_csv(io.StringIO(csv))
    assert set(frame["section"]) >= {"effect", "cost", "importance"}


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_output_compiles(ingested_tree, tmp_path):
    tex = make_effects(study="lion_toy", fmt="latex", results_dir=ingested_tree.results, n_boot=200,
                       interactions=[(PACKING, MASK)])
    assert compile_latex(tex, tmp_path).stat().st_size > 1000


def test_report_without_scores_is_a_one_line_error():
    from harness.report.data import NoData

    results = Results("e", pd.DataFrame([{"trial_id": "x", "status": "failed", "seed": 0}]),
                      pd.DataFrame(columns=["trial_id", "benchmark", "metric", "value", "stderr"]), axes=["seed"])
    with pytest.raises(NoData, match="no scores"):
        render(build_report(results), "md")


def test_command_line_prints_the_report_and_one_line_errors(ingested_tree):
    cmd = [sys.executable, "-m", "harness.cli", "effects", "--study", "lion_toy", "--results", str(ingested_tree.results),
           "--metric", "toy/accuracy", "--n-boot", "200", "--no-importance"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Main effects on toy/accuracy (study lion_toy)" in done.stdout and "dedup of shared stages saved" in done.stdout
    bad = subprocess.run(cmd + ["--interaction", "sft.packing", "sft.nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--interaction: 'sft.nope' is not an axis of study lion_toy" in bad.stderr
