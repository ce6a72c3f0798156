"""`harness bench all`'s report on small settings: the results-store figures (real ingest and query of a
synthetic study), eval throughput on the toy model, GPU rows, REPORT.md and its JSON."""
import argparse
import json

import pytest
import torch

from harness.bench.report import markdown, run_all, run_store


def test_store_benchmark_ingests_every_row_once_and_skips_unchanged_trials():
    result = run_store(quick=True)
    assert result["metric_rows"] == 100 * 100 and result["trials"] == 100
    assert result["reingest_unchanged_trials"] == 100 and result["query_seconds"] > 0


@pytest.mark.slow
def test_report_table_has_every_figure_with_target_and_machine(tmp_path):
    report = tmp_path / "bench" / "REPORT.md"
    result = run_all(argparse.Namespace(quick=True, json=True), sections=("store", "eval", "gpu"), report=report)
    text = report.read_text()
    assert text == markdown(result) and "| section | figure | value | target | status |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| section")]
    assert len(rows) == len(result["figures"]) >= 3 + 1 + 5
    sections = {f["section"] for f in result["figures"]}
    assert sections == {"store", "eval", "gpu"} and not any(f["status"] == "FAIL" for f in result["figures"]
                                                              if f["section"] != "store")
    assert "answers/s" in next(f["value"] for f in result["figures"] if f["section"] == "eval")
    if not torch.cuda.is_available():
        assert all(f["value"] == "n/a (no GPU)" for f in result["figures"] if f["section"] == "gpu")
    assert str(result["machine"]["cores"]) in text and result["machine"]["cpu"] in text
    assert json.loads(report.with_suffix(".json").read_text())["figures"] == result["figures"]
    json.dumps(result)  # what `--json` prints
