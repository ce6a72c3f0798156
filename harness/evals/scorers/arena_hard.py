"""Arena-Hard-Auto v0.1 scorer, as the official 2024 `show_result.py` (lmarena/arena-hard-auto) scores it.

Every judgment row holds two games on one question: game 1 shows the baseline as Assistant A and the
model as B, game 2 swaps them. Each game's verdict label becomes one battle "baseline (model_a) vs
model (model_b)", repeated `weight` (3) times for a strong verdict (`A>>B`, `B>>A`); a game without one
of the five labels is a failure and only that game is dropped. Ratings are a Bradley-Terry fit by
unpenalised logistic regression (every battle doubled; a tie = one win for each side; scale 400,
base 10, 1000 + 400 * coefficient), shifted so that the baseline sits at 1000. A model's score is its
predicted win rate against the baseline, in percent; the 95% CI is the 2.5 / 97.5 percentile of 100
bootstrap refits on battles resampled with replacement (NumPy seed 42), turned into win rates the
same way. Same figures as the official script (to ~1e-13 on a 1,000-judgment test set), except:
- the bootstrap refits anchor at the given baseline (the official ones anchor at gpt-4-0314 whatever
  `--baseline` says; no difference for that baseline);
- a model missing from a bootstrap sample is left out of that round's percentile, not NaN;
- scores are not rounded (the official table rounds them to 2 decimals).
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config.loader import ConfigError
from harness.evals.scorers import plain, read_records

# `regex_pattern` of the official v0.1 judge config; `get_score` reads it as gen_judgment.py does.
VERDICT_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")
VERDICT_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
SCALE, BASE, INIT_RATING = 400, 10, 1000
STRONG_WEIGHT = 3
TIE_WINNERS = ("tie", "tie (bothbad)")
ONE_SIDED_GAP = 50 * SCALE  # odds of 10 ** 50: win rates of 100 and 1e-48

# Winner of one battle "baseline (model_a) vs model (model_b)" per verdict label, and whether it is strong.
# Game 1: Assistant A is the baseline; game 2: Assistant A is the model.
GAME_OUTCOMES = (
    {"A>>B": ("model_a", True), "A>B": ("model_a", False), "A=B": ("tie", False),
     "B>A": ("model_b", False), "B>>A": ("model_b", True)},
    {"A>>B": ("model_b", True), "A>B": ("model_b", False), "A=B": ("tie", False),
     "B>A": ("model_a", False), "B>>A": ("model_a", True)},
)


def get_score(text: str, pattern: re.Pattern = VERDICT_PATTERN) -> tuple[str | None, bool]:
    """(label, try_again) as the official gen_judgment.py reads a judge's reply.

    One distinct label: (label, False). None: (None, True), the judge may be asked to go on.
    Several different labels: (None, False), a failed game.
    """
    labels = {match for match in pattern.findall(text or "") if match != ""}
    if not labels:
        return None, True
    if len(labels) == 1:
        return labels.pop().strip("\n"), False
    return None, False


def parse_verdict(text: str) -> str | None:
    """The verdict label of a judge's reply (`A>>B`, `A>B`, `A=B`, `B>A`, `B>>A`), None if there is none
    or the reply gives different ones. Other bracketed labels (e.g. `A<B`) come back as written; the
    scorer drops them, as the official one does."""
    return get_score(text)[0]


def battles_from_judgments(rows: list[dict], baseline: str = "gpt-4-0314", weight: int = STRONG_WEIGHT,
                           ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Battles (question_id, model_a, model_b, winner) in row and game order, and failed games per model."""
    battles, failures = [], {}
    for row in rows:
        model = row["model"]
        if model == baseline:
            continue
        failures.setdefault(model, 0)
        games = list(row.get("games") or [])
        for game_index, outcomes in enumerate(GAME_OUTCOMES):
            game = games[game_index] if game_index < len(games) else None
            outcome = outcomes.get(game.get("score")) if isinstance(game, dict) else None
            if outcome is None:
                failures[model] += 1
                continue
            winner, strong = outcome
            battle = {"question_id": row.get("question_id", row.get("uid")), "model_a": baseline,
                      "model_b": model, "winner": winner}
            battles += [battle] * (weight if strong else 1)
    frame = pd.DataFrame(battles, columns=["question_id", "model_a", "model_b", "winner"])
    return frame, failures


def fit_bt(battles: pd.DataFrame, baseline: str = "gpt-4-0314") -> pd.Series:
    """Elo-scaled Bradley-Terry ratings (baseline = 1000) by logistic regression, as `compute_mle_elo`."""
    models, first, second, outcome = _encode(battles)
    anchor = list(models).index(baseline) if baseline in set(models) else None
    with _one_blas_thread():
        return pd.Series(_fit(first, second, outcome, len(models), anchor), index=models)


def _encode(battles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Models (in order of appearance), model_a and model_b positions, outcome (1: model_a wins, 0: model_b, -1: tie)."""
    models = pd.unique(pd.concat([battles["model_a"], battles["model_b"]]))
    position = {model: i for i, model in enumerate(models)}
    first = np.array([position[m] for m in battles["model_a"]], dtype=int)
    second = np.array([position[m] for m in battles["model_b"]], dtype=int)
    winner = battles["winner"].to_numpy()
    outcome = np.where(winner == "model_a", 1, np.where(np.isin(winner, TIE_WINNERS), -1, 0))
    return np.asarray(models), first, second, outcome


def _fit(first: np.ndarray, second: np.ndarray, outcome: np.ndarray, n_models: int, anchor: int | None) -> np.ndarray:
    """Ratings per model position; NaN for a model without battles here (as in a bootstrap sample).

    The official fit has one row per battle, twice over: model_a wins both copies of its wins, and
    one copy of each tie. Identical rows are merged here into one weighted row: the same loss, so
    the same optimum, in a fraction of the time.
    """
    labels = np.concatenate([outcome != 0, outcome == 1]).astype(int)
    rows = np.column_stack([np.tile(first, 2), np.tile(second, 2), labels])
    present = np.bincount(np.concatenate([first, second]), minlength=n_models) > 0
    if labels.min() == labels.max():
        ratings = _one_sided_ratings(first, second, labels[0] == 1, n_models, anchor)
    else:
        unique_rows, counts = np.unique(rows, axis=0, return_counts=True)
        features = np.zeros((len(unique_rows), n_models))
        features[np.arange(len(unique_rows)), unique_rows[:, 0]] = +math.log(BASE)
        features[np.arange(len(unique_rows)), unique_rows[:, 1]] = -math.log(BASE)
        coefficients = _unpenalised_logistic_coefficients(features, unique_rows[:, 2].astype(float), counts)
        ratings = SCALE * coefficients + INIT_RATING
        if anchor is not None:
            ratings += INIT_RATING - ratings[anchor]
    return np.where(present, ratings, np.nan)


def _one_sided_ratings(first, second, model_a_wins: bool, n_models: int, anchor: int | None) -> np.ndarray:
    """Every battle won by the same side has no finite optimum (ratings go to +-infinity). A model
    that only wins (only loses) gets a rating so far above (below) 1000 that its win rate is 100 (0)."""
    winners, losers = (set(first), set(second)) if model_a_wins else (set(second), set(first))
    ratings = np.full(n_models, float(INIT_RATING))
    for model in range(n_models):
        if model != anchor and (model in winners) != (model in losers):
            ratings[model] += ONE_SIDED_GAP if model in winners else -ONE_SIDED_GAP
    return ratings


def _unpenalised_logistic_coefficients(features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """LogisticRegression(fit_intercept=False, penalty=None, tol=1e-8).coef_[0] on any scikit-learn."""
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    # sklearn 1.8 deprecated `penalty`; C=inf is its spelling of penalty=None.
    unpenalised = {"C": np.inf, "l1_ratio": 0.0} if _version(sklearn.__version__) >= (1, 8) else {"penalty": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # near-separated data, as in the official fit
        model = LogisticRegression(fit_intercept=False, tol=1e-8, **unpenalised)
        model.fit(features, labels, sample_weight=weights)
    return model.coef_[0]


def _one_blas_thread():
    """The fits are tiny: BLAS threads only contend (10x slower on a busy 2-core machine)."""
    import sklearn.linear_model  # noqa: F401  (loads scipy's BLAS first, so that the limit reaches it)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def win_rate(rating: float, baseline_rating: float) -> float:
    """Predicted win rate (%) of `rating` against `baseline_rating` (`predict_win_rate`)."""
    return 100.0 / (1.0 + BASE ** ((baseline_rating - rating) / SCALE))


def score_battles(battles: pd.DataFrame, baseline: str = "gpt-4-0314", num_rounds: int = 100,
                  seed: int = 42) -> dict[str, dict[str, float | None]]:
    """{model: {score, ci_low, ci_high}} in percent, best first; the baseline scores 50."""
    models, first, second, outcome = _encode(battles)
    if baseline not in set(models):
        raise ValueError(f"baseline {baseline!r} is in no battle")
    anchor = list(models).index(baseline)
    # The official np.random.seed(seed) + battles.sample(frac=1.0, replace=True) draws exactly these rows.
    rng = np.random.RandomState(seed)
    samples = (rng.choice(len(outcome), size=len(outcome), replace=True) for _ in range(num_rounds))
    with _one_blas_thread():
        ratings = _fit(first, second, outcome, len(models), anchor)
        boot = np.array([_fit(first[i], second[i], outcome[i], len(models), anchor) for i in samples])
    scores = {}
    for index, model in enumerate(models):
        entry = {"score": win_rate(ratings[index], ratings[anchor]), "ci_low": None, "ci_high": None}
        if num_rounds > 0:
            for key, q in (("ci_low", 2.5), ("ci_high", 97.5)):
                entry[key] = win_rate(np.nanpercentile(boot[:, index], q), np.nanpercentile(boot[:, anchor], q))
        scores[str(model)] = {key: plain(value) for key, value in entry.items()}
    return dict(sorted(scores.items(), key=lambda item: -item[1]["score"]))


def load_judgments(bench_dir: str | Path, judge_model: str) -> list[dict]:
    """All rows of BENCH_DIR/model_judgment/JUDGE/*.jsonl, files in name order."""
    judge_dir = Path(bench_dir) / "model_judgment" / judge_model
    files = sorted(judge_dir.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"no judgment files (*.jsonl) for judge {judge_model!r}", file=str(judge_dir))
    rows = []
    for path in files:
        for number, row in enumerate(read_records(path), start=1):
            if "model" not in row or "games" not in row:
                raise ConfigError("judgment row needs `model` and `games`", file=str(path), line=number)
            rows.append(row)
    return rows


def answer_models(bench_dir: str | Path) -> list[str]:
    """Models with an answer file in BENCH_DIR/model_answer (2024 `model_id` or 2025 `model` rows)."""
    models = []
    for path in sorted((Path(bench_dir) / "model_answer").glob("*.jsonl")):
        rows = read_records(path)
        if rows:
            models.append(rows[0].get("model", rows[0].get("model_id", path.stem)))
    return models


def load_battles(bench_dir: str | Path, judge_model: str, baseline: str = "gpt-4-0314",
                 weight: int = STRONG_WEIGHT) -> tuple[pd.DataFrame, dict[str, int]]:
    return battles_from_judgments(load_judgments(bench_dir, judge_model), baseline, weight)


def score_bench_dir(bench_dir: str | Path, judge_model: str, baseline: str = "gpt-4-0314",
                    num_rounds: int = 100, seed: int = 42) -> dict[str, Any]:
    """{"benchmark": "arena-hard", "models": {model: {score, ci_low, ci_high}}} from the official layout.

    A model whose every game failed is listed with None figures.
    """
    battles, failures = load_battles(bench_dir, judge_model, baseline)
    if battles.empty:
        raise ConfigError(f"no game has a verdict label for judge {judge_model!r}", file=str(bench_dir))
    models = score_battles(battles, baseline, num_rounds, seed)
    for model in failures:
        models.setdefault(model, {"score": None, "ci_low": None, "ci_high": None})
    return {"benchmark": "arena-hard", "models": models}


def format_leaderboard(result: dict[str, Any], failures: dict[str, int] | None = None,
                       unjudged: list[str] = ()) -> str:
    """The official table: model, score, 95% CI as (low - score, high - score); plus failed games."""
    lines = []
    for model, entry in result["models"].items():
        score, low, high = entry["score"], entry["ci_low"], entry["ci_high"]
        if score is None:
            lines.append(f"{model : <30} | score:  n/a  | every game failed")
            continue
        interval = "n/a" if low is None else str((round(low - score, 1), round(high - score, 1)))
        failed = (failures or {}).get(model, 0)
        lines.append(f"{model : <30} | score: {round(score, 1) : ^5} | 95% CI: {interval : ^12} | failed games: {failed}")
    if unjudged:
        lines.append(f"answers without judgments: {', '.join(unjudged)}")
    return "\n".join(lines)
