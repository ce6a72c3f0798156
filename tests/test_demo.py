"""The embedded demo end to end, as `tox -e demo` runs it, with shorter stages so CI stays fast:
grid run (2 workers) -> DuckDB -> table -> plots -> effects."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHORT = ["pipeline.sft.max_steps=40", "pipeline.dpo.max_steps=8", "pipeline.sdpo.max_steps=4",
         "pipeline.sft_continue.max_steps=8", "pipeline.online_dpo.max_steps=4", "pipeline.eval.limit=30"]


def harness(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    grid = str(REPO / "ablations" / "toy" / "demo.yaml")
    results = tmp_path / "results"
    overrides = [f"results_dir={results}", *SHORT]
    run = harness("run", grid, *overrides, "--json", cwd=tmp_path)
    assert '"complete": 10' in run.splitlines()[-1]
    # each distinct SFT config trained exactly once
    launches = sum(log.read_text().count(" train sft ") for log in results.glob("stages/sft-*/log"))
    assert launches == len(list(results.glob("stages/sft-*")))
    count = harness("query", "SELECT count(*) AS n FROM metrics WHERE benchmark='toy' AND metric='accuracy'",
                    "--results", str(results), "--format", "csv", cwd=tmp_path)
    assert count.strip().splitlines()[-1] == "10"
    table = harness("table", "--preset", "toy_demo", "--study", "toy-demo", "--results", str(results), cwd=tmp_path)
    assert "toy" in table.lower() and "|" in table
    harness("plot", "--preset", "all", "--study", "toy-demo", "--results", str(results), cwd=tmp_path)
    assert list((results / "plots").glob("*.png"))
    effects = harness("effects", grid, "--results", str(results), cwd=tmp_path)
    assert "dpo.beta" in effects or "dpo__beta" in effects
