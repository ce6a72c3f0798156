"""harness.report.tables and the table presets, on an ingested real results tree with planted effects."""
from __future__ import annotations

import io
import math
import re

import pandas as pd
import pytest

from harness.config.loader import ConfigError
from harness.report.presets import TABLE_PRESETS
from harness.report.tables import make_table


@pytest.fixture(scope="module")
def results(ingested_tree):
    return ingested_tree.results


def md_rows(text: str) -> list[list[str]]:
    """Body rows of the first Markdown table: cells stripped."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_lion_sft_packing_preset(results):
    text = make_table(preset="lion_sft_packing", results_dir=results, study="lion_toy")
    rows = {(r[0], r[1]): r[2:] for r in md_rows(text)}
    assert list(rows) == [("isolated", "all"), ("isolated", "assistant"), ("none", "all"), ("none", "assistant")]
    # eval:sft toy accuracy = score - 0.1, with β 0.1's trial first; arena-hard = 100·acc/3; two seeds (+0.01)
    arena = [100 * (0.305 + 0.25 * (m == "assistant") + 0.05 * (p == "isolated")) / 3 for p, m in rows]
    assert [float(cells[0].strip("*").split(" ± ")[0]) for cells in rows.values()] == pytest.approx(arena, abs=0.006)
    assert rows[("isolated", "assistant")][0].startswith("**") and not rows[("none", "all")][0].startswith("**")
    se = float(rows[("none", "all")][0].split(" ± ")[1])
    assert se == pytest.approx(100 * 0.01 / 3 / 2, abs=0.006)  # two distinct SFT evals, not four shared rows
    assert "study lion_toy · 16 of 18 trials · git 0123456789ab" in text
    assert "n = 2 per cell" in text and "scores from eval:sft" in text
    assert "no Open LLM scores" in text  # a column the study lacks is skipped, with a note


def test_spec_file_with_filter_average_and_labels(results, tmp_path):
    spec = tmp_path / "table.yaml"
    spec.write_text("study: lion_toy\ntitle: 'Loss mask at beta 0.5'\nrows: [sft.loss_mask]\n"
                    "columns:\n  - {name: Toy, metric: toy/accuracy, scale: 100}\n"
                    "  - {name: MT, metric: mt-bench.score}\n"
                    "filter: {dpo.beta: 0.5, sft.packing: none}\naverage: true\nlabels: {sft.loss_mask: Mask}\n"
                    "decimals: 3\n")
    text = make_table(spec, results_dir=results)
    assert text.startswith("**Loss mask at beta 0.5**")
    assert "| Mask | Toy | MT | Average |" in text
    rows = md_rows(text)
    numbers = [float(x) for cell in rows[0][1:] for x in cell.strip("*").split(" ± ")]
    # none/all/β0.5: acc 0.30 and 0.31 → toy 30.5 ± 0.5; MT 3.05 ± 0.05; the average is taken per seed first
    assert rows[0][0] == "all"
    assert numbers == pytest.approx([30.5, 0.5, 3.05, 0.05, (16.5 + 17.05) / 2, 0.275], abs=1e-3)
    assert rows[1][1] == "**55.500 ± 0.500**" and not rows[0][1].startswith("**")
    assert "study lion_toy · 4 of 18 trials" in text


def test_single_measurement_shows_the_benchmarks_own_stderr(results, tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text("study: lion_toy\nrows: [sft.packing]\ncolumns: [{name: acc, metric: toy/accuracy}]\n"
                    "filter: {seed: 0, dpo.beta: 0.1, sft.loss_mask: all}\ndecimals: 4\n")
    rows = md_rows(make_table(spec, results_dir=results))
    p = 0.40  # none/all/β0.1/seed 0
    assert rows[1] == ["none", f"{p:.4f} ± {math.sqrt(p * (1 - p) / 300):.4f}"]


def test_latex_booktabs_compiles(results, compile_latex):
    text = make_table(preset="sdpo_table2", fmt="latex", results_dir=results)
    body = text[text.index(r"\midrule"):text.index(r"\bottomrule")].splitlines()[1:]
    assert [r"\toprule" in text, r"\midrule" in text, r"\bottomrule" in text] == [True] * 3
    assert r"\begin{tabular}{lrrrrr}" in text and len(body) == 2
    assert all(row.count("&") == 5 and row.endswith(r"\\") for row in body)
    assert body[1].count(r"\textbf{") == 5 and r"\textbf" not in body[0]  # sDPO beats DPO in every column
    assert "toy\\_sdpo" in text and "-{}-study" in text
    assert compile_latex(text).stat().st_size > 1000  # skipped without pdflatex: structure checked above


def test_csv_is_machine_readable(results):
    text = make_table(preset="sdpo_table2", fmt="csv", results_dir=results)
    frame = pd.read_csv(io.StringIO(text), comment="#")
    assert list(frame.columns[:4]) == ["method", "H4", "H4 stderr", "H4 n"]
    h4 = frame.set_index("method")["H4"]
    assert h4["sdpo"] - h4["dpo"] == pytest.approx(3.0)  # the planted +0.03 on each of the four
    assert re.search(r"^# study toy_sdpo · 4 of 4 trials", text, re.M)


@pytest.mark.parametrize("preset", sorted(TABLE_PRESETS))
def test_every_preset_renders_on_every_study(results, preset):
    for study in ("lion_toy", "toy_scaling", "toy_sdpo"):
        try:
            text = make_table(preset=preset, study=study, results_dir=results)
        except ConfigError as err:  # a preset may not apply; then it says why, in one line
            assert "\n" not in str(err) and study in str(err)
            continue
        assert md_rows(text) and f"study {study}" in text


def test_presets_pick_the_study_that_fits(results):
    assert "study toy_sdpo" in make_table(preset="sdpo_table2", results_dir=results)
    assert "| online_samples |" in make_table(preset="lion_online_dpo", results_dir=results)


def test_spec_errors_are_one_line(results, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: lion_toy\nrows: [sft.packing]\ncolumns: [toy/accuracy]\ncolour: red\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: colour: unknown key"):
        make_table(bad, results_dir=results)
    bad.write_text("study: lion_toy\nrows: [sft.nope]\ncolumns: [toy/accuracy]\n")
    with pytest.raises(ConfigError, match="'sft.nope' is not an axis of study lion_toy"):
        make_table(bad, results_dir=results)
    bad.write_text("study: lion_toy\ncolumns: [toy/nope]\n")
    with pytest.raises(ConfigError, match="no finished scores for toy/nope"):
        make_table(bad, results_dir=results)
    with pytest.raises(ConfigError, match="unknown table preset 'nope'"):
        make_table(preset="nope", results_dir=results)


def test_cli_table(results, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "t.tex"
    assert main(["table", "--preset", "toy_demo", "--study", "lion_toy", "--format", "latex", "--results", str(results),
                 "--out", str(out)]) == 0
    assert out.read_text().startswith("% requires \\usepackage{booktabs}")
    assert main(["table", "--results", str(results)]) == 2
    assert "give a table spec file or --preset" in capsys.readouterr().err
