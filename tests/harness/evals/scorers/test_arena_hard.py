"""Arena-Hard-Auto v0.1 scorer.

No real judgments ship with shared data, so a judgment set is made here in the official layout: the
500 real questions, the two real answer files plus a third model, and verdicts drawn with a fixed seed
(about 5% of games fail: no label, two different labels, or a label outside the five). The scorer
must match (1) a restatement of the official 2024 algorithm kept below as the reference and (2) a
direct maximum-likelihood fit of the Bradley-Terry model with scipy.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from harness.evals.scorers import shared_data_dir
from harness.evals.scorers.arena_hard import (
    VERDICT_LABELS, battles_from_judgments, get_score, parse_verdict, score_battles, score_bench_dir)

ARENA = shared_data_dir() / "arena_hard_v0.1"
JUDGE, BASELINE = "gpt-4-1106-preview", "gpt-4-0314"
# P(model much worse, worse, tie, better, much better than the baseline) per game.
MODEL_ODDS = {"gpt-3.5-turbo-0125": [0.30, 0.40, 0.10, 0.15, 0.05], "toy-7b": [0.10, 0.25, 0.15, 0.30, 0.20]}
# The label a judge writes for each outcome, by game (game 1: the baseline is Assistant A).
OUTCOME_LABELS = (("A>>B", "A>B", "A=B", "B>A", "B>>A"), ("B>>A", "B>A", "A=B", "A>B", "A>>B"))
FAILED_TEXTS = ("I cannot decide between the two answers.",
                "At first [[A>B]], but on reflection [[B>A]].",
                "My final verdict is [[A<B]].")


def judge_text(label: str) -> str:
    return (f"Assistant A's answer covers the main points; Assistant B's answer differs in detail.\n\n"
            f"My final verdict is: [[{label}]]")


def make_judgments(seed: int = 7) -> tuple[dict[str, list[dict]], dict[str, list[int | None]]]:
    """Official-format judgment rows per model, and each game's outcome (0..4 from the model's side, None: failed)."""
    rng = np.random.default_rng(seed)
    uids = [json.loads(line)["uid"] for line in (ARENA / "question.jsonl").read_text().splitlines()]
    rows, outcomes = {}, {}
    for model, odds in MODEL_ODDS.items():
        rows[model], outcomes[model] = [], []
        for uid in uids:
            games = []
            for game in range(2):
                if rng.random() < 0.05:
                    text, outcome = FAILED_TEXTS[int(rng.integers(3))], None
                else:
                    outcome = int(rng.choice(5, p=odds))
                    text = judge_text(OUTCOME_LABELS[game][outcome])
                games.append({"user_prompt": f"<|User Prompt|>\n{uid}", "judgment": text, "score": parse_verdict(text)})
                outcomes[model].append(outcome)
            rows[model].append({"question_id": uid, "model": model, "judge": JUDGE, "games": games})
    return rows, outcomes


def write_bench_dir(root: Path, rows: dict[str, list[dict]]) -> Path:
    (root / "model_answer").mkdir(parents=True)
    for answers in (ARENA / "model_answer").glob("*.jsonl"):
        shutil.copy(answers, root / "model_answer" / answers.name)
    judge_dir = root / "model_judgment" / JUDGE
    judge_dir.mkdir(parents=True)
    for model, model_rows in rows.items():
        (judge_dir / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in model_rows))
    return root


@pytest.fixture(scope="module")
def judgment_set():
    if not ARENA.exists():
        pytest.skip("arena_hard_v0.1 shared data not found")
    return make_judgments()


@pytest.fixture(scope="module")
def bench_dir(judgment_set, tmp_path_factory):
    return write_bench_dir(tmp_path_factory.mktemp("arena"), judgment_set[0])


@pytest.fixture(scope="module")
def scored(bench_dir):
    return score_bench_dir(bench_dir, JUDGE, BASELINE)


# --- Reference: Arena-Hard-Auto v0.1 scoring, restated from lmarena/arena-hard-auto (Apache-2.0),
# `show_result.py` + `utils_math.py` as of 2024: get_battles_from_judgment (baseline = model_a, game 2
# swapped, strong verdicts x3, other labels dropped), compute_mle_elo (battles doubled, ties = one win
# each, LogisticRegression without intercept or penalty, tol 1e-8, 400 * coef + 1000, baseline at 1000),
# np.random.seed(42) + 100 x battles.sample(frac=1, replace=True), percentiles 2.5 / 97.5, and
# get_win_rate_column (predicted win rate vs the baseline, x100, rounded to 2 decimals).
# Only "no penalty" is spelled C=inf, scikit-learn's current form of penalty=None.
def reference_v01(bench_dir: Path, judge: str, baseline: str, weight: int = 3, rounds: int = 100) -> dict:
    winners = ({"A>B": "model_a", "A>>B": "model_a", "A=B": "tie", "B>A": "model_b", "B>>A": "model_b"},
               {"A>B": "model_b", "A>>B": "model_b", "A=B": "tie", "B>A": "model_a", "B>>A": "model_a"})
    records = []
    for path in sorted((bench_dir / "model_judgment" / judge).glob("*jsonl")):
        for _, row in pd.read_json(path, lines=True).iterrows():
            for game_no in (0, 1):
                label = row["games"][game_no]["score"]
                if label in winners[game_no]:
                    battle = {"question_id": row["question_id"], "model_a": baseline, "model_b": row["model"],
                              "winner": winners[game_no][label]}
                    records += [battle] * (weight if label in ("A>>B", "B>>A") else 1)
    battles = pd.DataFrame(records)

    def compute_mle_elo(df):
        from sklearn.linear_model import LogisticRegression

        names = pd.concat([df["model_a"], df["model_b"]]).unique()
        position = {name: i for i, name in enumerate(names)}
        df = pd.concat([df, df], ignore_index=True)
        x = np.zeros((len(df), len(names)))
        for i, (a, b) in enumerate(zip(df["model_a"], df["model_b"])):
            x[i, position[a]], x[i, position[b]] = math.log(10), -math.log(10)
        y = np.where(df["winner"] == "model_a", 1.0, 0.0)
        ties = np.flatnonzero(df["winner"] == "tie")
        y[ties[ties < len(df) // 2]] = 1.0
        lr = LogisticRegression(fit_intercept=False, C=np.inf, l1_ratio=0.0, tol=1e-8).fit(x, y)
        elo = 400 * lr.coef_[0] + 1000
        elo += 1000 - elo[position[baseline]]
        return pd.Series(elo, index=names)

    with threadpool_limits(1, user_api="blas"):  # speed only: tiny fits, contended BLAS threads
        elo = compute_mle_elo(battles)
        np.random.seed(42)
        boot = pd.DataFrame([compute_mle_elo(battles.sample(frac=1.0, replace=True)) for _ in range(rounds)])

    def vs_baseline(ratings):
        return {m: round(100 / (1 + 10 ** ((ratings[baseline] - r) / 400)), 2) for m, r in ratings.items()}

    score = vs_baseline(elo)
    low = vs_baseline({m: np.percentile(boot[m], 2.5) for m in elo.index})
    high = vs_baseline({m: np.percentile(boot[m], 97.5) for m in elo.index})
    return {m: {"score": score[m], "ci_low": low[m], "ci_high": high[m]} for m in elo.index}


def direct_mle_scores(outcomes: dict[str, list[int | None]], weight: int = 3) -> dict[str, float]:
    """Bradley-Terry by maximising its log-likelihood with scipy: P(model beats baseline) = sigmoid(theta).
    Strong verdicts count `weight` times; a tie is half a win and half a loss."""
    scores = {}
    for model, games in outcomes.items():
        counts = np.zeros(5)
        for outcome in games:
            if outcome is not None:
                counts[outcome] += weight if outcome in (0, 4) else 1
        wins, losses = counts[3] + counts[4] + counts[2] / 2, counts[0] + counts[1] + counts[2] / 2

        def negative_log_likelihood(theta):
            return -(wins * -np.logaddexp(0, -theta[0]) + losses * -np.logaddexp(0, theta[0]))

        theta = minimize(negative_log_likelihood, x0=[0.0], method="BFGS", options={"gtol": 1e-10}).x[0]
        scores[model] = 100 / (1 + math.exp(-theta))
    return scores


def test_matches_official_v01_algorithm(bench_dir, scored):
    reference = reference_v01(bench_dir, JUDGE, BASELINE)
    assert set(scored["models"]) == set(reference) == {BASELINE, *MODEL_ODDS}
    for model, expected in reference.items():
        for key in ("score", "ci_low", "ci_high"):
            # The reference rounds to 2 decimals; the issue allows 0.5.
            assert scored["models"][model][key] == pytest.approx(expected[key], abs=0.006), (model, key)


def test_matches_direct_maximum_likelihood_fit(judgment_set, scored):
    expected = direct_mle_scores(judgment_set[1])
    for model, score in expected.items():
        assert scored["models"][model]["score"] == pytest.approx(score, abs=0.01), model
    assert 5 < expected["gpt-3.5-turbo-0125"] < 30 < expected["toy-7b"] < 70  # the set is not degenerate


def test_baseline_scores_50_and_ci_brackets_the_score(scored):
    assert scored["benchmark"] == "arena-hard"
    assert scored["models"][BASELINE] == pytest.approx({"score": 50.0, "ci_low": 50.0, "ci_high": 50.0})
    for entry in scored["models"].values():
        assert 0 <= entry["ci_low"] <= entry["score"] <= entry["ci_high"] <= 100
    assert list(scored["models"])[0] == "toy-7b"  # best first


def test_failed_games_are_dropped_one_game_at_a_time(judgment_set):
    rows, outcomes = judgment_set
    battles, failures = battles_from_judgments([r for model in rows.values() for r in model], BASELINE)
    for model, games in outcomes.items():
        assert failures[model] == sum(outcome is None for outcome in games) > 0
        weighted = sum(3 if o in (0, 4) else 1 for o in games if o is not None)
        assert (battles["model_b"] == model).sum() == weighted


def test_score_is_monotone_in_wins(judgment_set):
    rows = json.loads(json.dumps(judgment_set[0]))  # a deep copy
    flat = [r for model in rows.values() for r in model]
    before = score_battles(battles_from_judgments(flat, BASELINE)[0], BASELINE, num_rounds=0)
    row = next(r for r in rows["toy-7b"] if r["games"][0]["score"] == "A>B")
    row["games"][0]["score"] = "B>A"  # a game 1 loss becomes a win
    after = score_battles(battles_from_judgments(flat, BASELINE)[0], BASELINE, num_rounds=0)
    assert after["toy-7b"]["score"] > before["toy-7b"]["score"]
    assert after["gpt-3.5-turbo-0125"]["score"] == pytest.approx(before["gpt-3.5-turbo-0125"]["score"], abs=1e-6)


def test_parse_verdict_reads_the_official_labels():
    for label in VERDICT_LABELS:
        assert parse_verdict(judge_text(label)) == label
    assert parse_verdict("[[B>A]] ... so again: [[B>A]]") == "B>A"
    assert parse_verdict("no verdict here") is None
    assert parse_verdict("[[A>B]] or rather [[A=B]]") is None
    assert parse_verdict("[A>B] single brackets do not count") is None
    assert parse_verdict("[[A<B]]") == "A<B"  # kept as written; the scorer drops it as the official one does
    assert get_score("nothing yet") == (None, True)  # the judge may be asked to continue
    assert get_score("[[A>B]] [[B>A]]") == (None, False)


SWAP = {"A>>B": "B>>A", "A>B": "B>A", "A=B": "A=B", "B>A": "A>B", "B>>A": "A>>B", None: None}
game_labels = st.sampled_from([*VERDICT_LABELS, None])


def rows_of(games: list[tuple]) -> list[dict]:
    return [{"question_id": str(i), "model": "m", "games": [{"score": g1}, {"score": g2}]}
            for i, (g1, g2) in enumerate(games)]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(game_labels, game_labels), min_size=1, max_size=25))
def test_swapping_a_and_b_in_every_game_gives_100_minus_score(games):
    battles, _ = battles_from_judgments(rows_of(games), "base")
    if battles.empty:
        return
    swapped, _ = battles_from_judgments(rows_of([(SWAP[a], SWAP[b]) for a, b in games]), "base")
    score = score_battles(battles, "base", num_rounds=3)["m"]
    mirror = score_battles(swapped, "base", num_rounds=3)["m"]
    assert 0 <= score["score"] <= 100 and 0 <= score["ci_low"] <= score["ci_high"] <= 100
    assert mirror["score"] == pytest.approx(100 - score["score"], abs=1e-3)


def test_cli_prints_leaderboard_and_json(bench_dir):
    command = [sys.executable, "-m", "harness.cli", "score", "arena-hard", str(bench_dir),
               "--judge-model", JUDGE, "--baseline", BASELINE, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["benchmark"] == "arena-hard" and set(result) == {"benchmark", "models"}
    assert set(result["models"]["toy-7b"]) == {"score", "ci_low", "ci_high"}
    assert any(line.startswith("toy-7b") and "95% CI" in line for line in lines[:-1])

    missing = subprocess.run([*command[:-5], "--judge-model", "nobody"], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nobody" in missing.stderr


def test_reads_2025_layout_rows_with_uid(tmp_path, judgment_set):
    rows = {"toy-7b": [{**{k: v for k, v in r.items() if k != "question_id"}, "uid": r["question_id"]}
                       for r in judgment_set[0]["toy-7b"]]}
    result = score_bench_dir(write_bench_dir(tmp_path, rows), JUDGE, BASELINE, num_rounds=5)
    expected = direct_mle_scores({"toy-7b": judgment_set[1]["toy-7b"]})["toy-7b"]
    assert result["models"]["toy-7b"]["score"] == pytest.approx(expected, abs=0.01)
