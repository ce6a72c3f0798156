"""MT-Bench scorer: FastChat's rating parsing and `show_result.py --mode single` means, failures kept apart."""
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
from harness.evals.scorers.mt_bench import parse_rating, score_judgments

JUDGE = ["gpt-4", "single-v1"]


@pytest.mark.parametrize("text, rating", [
    ("The answer is helpful and correct.\n\nRating: [[8]]", 8.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [6]", 6.0),  # FastChat's backup pattern
    ("Step [2] is wrong. Rating: [[3]]", 3.0),  # [[x]] wins over an earlier [x]
    ("Rating: [[5.]]", 5.0),
    ("I rate it 9 out of 10.", None),
    ("Rating: [[eight]]", None),
    ("Rating: [[-1]]", None),
    ("", None),
    (None, None),
])
def test_parse_rating_handles_both_bracket_forms_and_failures(text, rating):
    assert parse_rating(text) == rating


def make_judgments(seed: int = 3) -> list[dict]:
    """FastChat single-grading rows on the real MT-Bench question ids; ~8% unparseable judgments."""
    path = shared_data_dir() / "mt_bench" / "question.jsonl"
    if not path.exists():
        pytest.skip("mt_bench shared data not found")
    question_ids = [json.loads(line)["question_id"] for line in path.read_text().splitlines()]
    rng = random.Random(seed)
    rows = []
    for model, center in (("toy-a", 6.5), ("toy-b", 4.0)):
        for question_id in question_ids:
            for turn in (1, 2):
                rating = min(10, max(1, round(rng.gauss(center - (turn - 1), 2))))
                judgment = f"The response is adequate.\n\nRating: [[{rating}]]"
                if rng.random() < 0.08:
                    judgment = "The response is adequate, I would give it a seven."
                score = parse_rating(judgment)
                rows.append({"question_id": question_id, "model": model, "judge": JUDGE, "user_prompt": "...",
                             "judgment": judgment, "score": -1 if score is None else score, "turn": turn})
    return rows


def fastchat_show_result(rows: list[dict]) -> dict:
    """FastChat `show_result.py` display_result_single: drop score == -1, mean per (model, turn), per model."""
    df = pd.DataFrame(rows)[["model", "score", "turn"]]
    df = df[df["score"] != -1]
    turn_1 = df[df["turn"] == 1].groupby(["model", "turn"]).mean()["score"].droplevel("turn")
    turn_2 = df[df["turn"] == 2].groupby(["model", "turn"]).mean()["score"].droplevel("turn")
    overall = df[["model", "score"]].groupby(["model"]).mean()["score"]
    return {m: (turn_1[m], turn_2[m], overall[m]) for m in overall.index}


def test_means_match_fastchat_show_result_and_failures_are_not_zeros():
    rows = make_judgments()
    ours = score_judgments(rows)
    expected = fastchat_show_result(rows)
    assert ours["benchmark"] == "mt-bench" and list(ours["models"]) == ["toy-a", "toy-b"]
    for model, (turn_1, turn_2, overall) in expected.items():
        entry = ours["models"][model]
        assert (entry["turn_1"], entry["turn_2"], entry["overall"]) == pytest.approx((turn_1, turn_2, overall))
        failed = [r for r in rows if r["model"] == model and r["score"] == -1]
        assert entry["n_failures"] == len(failed) > 0
        assert entry["n_failures_turn_1"] + entry["n_failures_turn_2"] == len(failed)
        assert entry["n_rated"] + entry["n_failures"] == 160
        as_zeros = sum(r["score"] for r in rows if r["model"] == model and r["score"] != -1) / 160
        assert entry["overall"] > as_zeros + 0.2


def test_rows_without_score_are_parsed_and_none_scores_are_failures():
    rows = [
        {"model": "m", "turn": 1, "judgment": "Rating: [[9]]"},
        {"model": "m", "turn": 2, "judgment": "Rating: [4]"},
        {"model": "m", "turn": 2, "judgment": "no rating"},
        {"model": "m", "turn": 1, "score": None, "judgment": "Rating: [[1]]"},
        {"model": "n", "turn": 1, "score": -1},
    ]
    result = score_judgments(rows)["models"]
    assert result["m"]["turn_1"] == 9.0 and result["m"]["turn_2"] == 4.0 and result["m"]["overall"] == 6.5
    assert result["m"]["n_failures"] == 2 and result["m"]["n_failures_turn_2"] == 1
    assert result["n"] == {"turn_1": None, "turn_2": None, "overall": None, "n_rated": 0, "n_failures": 1,
                           "n_failures_turn_1": 1, "n_failures_turn_2": 0}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.one_of(st.integers(1, 10), st.just(-1), st.none())),
                min_size=1, max_size=40))
def test_means_lie_within_the_ratings(turns_and_scores):
    rows = [{"model": "m", "turn": turn, "score": score} for turn, score in turns_and_scores]
    entry = score_judgments(rows)["models"]["m"]
    rated = [s for _, s in turns_and_scores if s not in (None, -1)]
    assert entry["n_rated"] == len(rated) and entry["n_failures"] == len(turns_and_scores) - len(rated)
    if rated:
        assert min(rated) <= entry["overall"] <= max(rated)
    else:
        assert entry["overall"] is None


def test_cli_json(tmp_path):
    rows = make_judgments()
    path = tmp_path / "gpt-4_single.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, "-m", "harness.cli", "score", "mt-bench", str(path), "--json"],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result == json.loads(json.dumps(score_judgments(rows)))
    assert any(line.startswith("toy-a") for line in lines[:-1])
