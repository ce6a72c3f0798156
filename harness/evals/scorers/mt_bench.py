"""MT-Bench scorer for single-answer grading, as FastChat's llm_judge computes it.

A judgment row is FastChat's (`data/mt_bench/model_judgment/<judge>_single.jsonl`): `question_id`,
`model`, `turn` (1 or 2), `score` (the judge's 1-10 rating, -1 when it could not be parsed) and
`judgment` (the judge's reply). The rating is read from `[[rating]]`, else from `[rating]`, as
`fastchat/llm_judge/common.py` does. An unparseable rating is a failure: it is counted and left out,
never made a 0 (FastChat's `show_result.py` drops score == -1 rows the same way). The figures are
`show_result.py --mode single`: per model the mean score of turn-1 rows, of turn-2 rows, and of all rows.
"""
from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from harness.evals.scorers import plain

ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
FAILED_SCORE = -1  # what FastChat writes for an unparseable rating


def parse_rating(text: str | None) -> float | None:
    """The judge's rating: the first `[[x]]`, else the first `[x]`; None (a failure) if neither."""
    text = text or ""
    match = ONE_SCORE_PATTERN.search(text) or ONE_SCORE_PATTERN_BACKUP.search(text)
    return float(match.group(1)) if match else None


def row_rating(row: dict) -> float | None:
    """A row's rating: its `score` (None, -1 or not a number: a failure), else parsed from `judgment`."""
    if "score" not in row:
        return parse_rating(row.get("judgment"))
    score = row["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    if not math.isfinite(score) or score == FAILED_SCORE:
        return None
    return float(score)


def score_judgments(rows: list[dict]) -> dict[str, Any]:
    """{"benchmark": "mt-bench", "models": {model: {turn_1, turn_2, overall, n_rated, n_failures,
    n_failures_turn_1, n_failures_turn_2}}}, best overall first. A mean with no rated row is None."""
    frame = pd.DataFrame({
        "model": [row.get("model") for row in rows],
        "turn": [row.get("turn") for row in rows],
        "score": [row_rating(row) for row in rows],
    })
    failed = frame[frame["score"].isna()]
    rated = frame.dropna(subset=["score"])
    turn_means = {turn: rated[rated["turn"] == turn].groupby("model")["score"].mean() for turn in (1, 2)}
    overall = rated.groupby("model")["score"].mean()
    models = {}
    for model in pd.unique(frame["model"]):
        models[model] = {
            "turn_1": plain(turn_means[1].get(model)),
            "turn_2": plain(turn_means[2].get(model)),
            "overall": plain(overall.get(model)),
            "n_rated": int((rated["model"] == model).sum()),
            "n_failures": int((failed["model"] == model).sum()),
            "n_failures_turn_1": int(((failed["model"] == model) & (failed["turn"] == 1)).sum()),
            "n_failures_turn_2": int(((failed["model"] == model) & (failed["turn"] == 2)).sum()),
        }
    ranked = sorted(models.items(), reverse=True,
                    key=lambda item: -math.inf if item[1]["overall"] is None else item[1]["overall"])
    return {"benchmark": "mt-bench", "models": dict(ranked)}


def format_result(result: dict[str, Any]) -> str:
    def cell(value):
        return "  n/a " if value is None else f"{value:6.3f}"

    lines = [f"{'model' : <30} | turn 1 | turn 2 | overall | rated | failed"]
    for model, entry in result["models"].items():
        lines.append(f"{str(model) : <30} | {cell(entry['turn_1'])} | {cell(entry['turn_2'])} | "
                     f"{cell(entry['overall'])}  | {entry['n_rated'] : >5} | {entry['n_failures'] : >6}")
    return "\n".join(lines)
