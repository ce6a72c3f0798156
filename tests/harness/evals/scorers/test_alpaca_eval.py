"""AlpacaEval 2 scorer: reproduces the published leaderboard for every model whose annotations are in
shared data, counts judge failures instead of scoring them as losses, and finds LC difficulties by
instruction. Tolerances are the issue's: win rate and SE within 0.05, LC within 0.5."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.evals.scorers import shared_data_dir
from harness.evals.scorers.alpaca_eval import LEADERBOARD_KEYS, score_annotations

ALPACA = shared_data_dir() / "alpaca_eval"
ANNOTATION_FILES = sorted(ALPACA.glob("results/*/weighted_alpaca_eval_gpt4_turbo/annotations.json"))
MODELS = [path.parents[1].name for path in ANNOTATION_FILES]


def annotations_of(model: str) -> list[dict]:
    return json.loads((ALPACA / "results" / model / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json").read_text())


@pytest.fixture(scope="module")
def leaderboard() -> pd.DataFrame:
    return pd.read_csv(ALPACA / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", index_col=0)


@pytest.mark.parametrize("model", MODELS)
def test_reproduces_published_leaderboard(model, leaderboard):
    published = leaderboard.loc[model]
    ours = score_annotations(annotations_of(model))
    assert ours["lc_note"] is None and ours["n_failures"] == 0
    assert ours["win_rate"] == pytest.approx(published["win_rate"], abs=0.05)
    assert ours["standard_error"] == pytest.approx(published["standard_error"], abs=0.05)
    assert ours["discrete_win_rate"] == pytest.approx(published["discrete_win_rate"], abs=0.05)
    for count in ("n_wins", "n_wins_base", "n_draws", "n_total"):
        assert ours[count] == published[count], count
    assert ours["length_controlled_winrate"] == pytest.approx(published["length_controlled_winrate"], abs=0.5)
    if not pd.isna(published["lc_standard_error"]):
        assert ours["lc_standard_error"] == pytest.approx(published["lc_standard_error"], abs=0.05)


def test_judge_failures_are_counted_and_left_out_not_losses():
    rows = annotations_of("FuseChat-Llama-3.2-1B-Instruct")
    wins = [i for i, row in enumerate(rows) if row["preference"] > 1.5][:30]
    for i in wins[:25]:
        rows[i]["preference"] = None
    for i, bad in zip(wins[25:], ["n/a", 3.0, float("nan"), -1, {}]):
        rows[i]["preference"] = bad
    kept = [row["preference"] - 1 for i, row in enumerate(rows) if i not in wins]

    ours = score_annotations(rows)

    assert ours["n_failures"] == 30 and ours["n_total"] == len(rows) - 30
    assert ours["win_rate"] == pytest.approx(100 * sum(kept) / len(kept), abs=1e-9)
    as_losses = 100 * sum(kept) / len(rows)
    assert ours["win_rate"] > as_losses + 0.5
    assert 0 < ours["length_controlled_winrate"] < 100 and ours["lc_note"] is None


def test_lc_finds_instruction_difficulty_by_instruction_not_row_position(leaderboard):
    """Shuffled rows must score as the ordered file does; read by position (alpaca_eval's own
    lookup) this file's LC is off by ~10 points."""
    model = "gpt-3.5-turbo-1106"
    rows = annotations_of(model)
    random.Random(0).shuffle(rows)
    shuffled = score_annotations(rows)
    assert shuffled["length_controlled_winrate"] == pytest.approx(
        leaderboard.loc[model, "length_controlled_winrate"], abs=0.5)
    subset = score_annotations(rows[:300])
    assert subset["n_total"] == 300 and 0 < subset["length_controlled_winrate"] < 100


def test_missing_lc_data_gives_none_with_reason(tmp_path, monkeypatch):
    rows = annotations_of("gemma-7b-it")
    monkeypatch.setenv("HARNESS_ALPACA_LC_DATA", str(tmp_path / "df_gamed.csv"))
    ours = score_annotations(rows)
    assert ours["length_controlled_winrate"] is None and ours["lc_standard_error"] is None
    assert str(tmp_path) in ours["lc_note"]
    assert "df_gamed" in score_annotations(rows, lc_data_path=tmp_path)["lc_note"]
    assert ours["win_rate"] == pytest.approx(100 * sum(r["preference"] - 1 for r in rows) / len(rows))
    no_text = score_annotations([{"preference": p["preference"]} for p in rows], lc_data_path=ALPACA / "lc")
    assert no_text["length_controlled_winrate"] is None and "output_1" in no_text["lc_note"]


def test_lc_data_directory_or_file_and_no_weights_written_into_alpaca_eval():
    import alpaca_eval
    from pathlib import Path

    package = Path(alpaca_eval.__file__).parent
    before = sorted(str(p) for p in package.rglob("*.csv"))
    rows = annotations_of("oasst-sft-pythia-12b")
    from_dir = score_annotations(rows, lc_data_path=ALPACA / "lc")
    from_file = score_annotations(rows, lc_data_path=ALPACA / "lc" / "df_gamed_reconstructed.csv")
    assert from_dir["length_controlled_winrate"] == from_file["length_controlled_winrate"] is not None
    assert sorted(str(p) for p in package.rglob("*.csv")) == before

    from alpaca_eval.metrics import glm_winrate
    from huggingface_hub import hf_hub_download

    assert glm_winrate.hf_hub_download is hf_hub_download  # the local stand-in is gone after the call


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(1, 2), st.sampled_from([1.0, 1.5, 2.0, 0, None, float("nan"), 7.0])),
                min_size=1, max_size=60))
def test_win_rates_are_percentages_and_counts_add_up(preferences):
    ours = score_annotations([{"preference": p} for p in preferences])
    assert ours["n_total"] + ours["n_failures"] == len(preferences)
    assert ours["n_wins"] + ours["n_wins_base"] + ours["n_draws"] == ours["n_total"]
    if ours["n_total"]:
        assert 0 <= ours["win_rate"] <= 100 and 0 <= ours["discrete_win_rate"] <= 100
    else:
        assert ours["win_rate"] is None


def test_cli_json_last_line_has_the_leaderboard_keys(leaderboard):
    model = "FuseChat-Gemma-2-9B-Instruct"
    path = ALPACA / "results" / model / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "score", "alpaca-eval", str(path), "--json"],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert list(result) == list(LEADERBOARD_KEYS)
    assert result["win_rate"] == pytest.approx(leaderboard.loc[model, "win_rate"], abs=0.05)
    assert result["length_controlled_winrate"] == pytest.approx(
        leaderboard.loc[model, "length_controlled_winrate"], abs=0.5)
    assert any(line.startswith("lc_standard_error: ") for line in lines[:-1])
