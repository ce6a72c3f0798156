"""Standalone scorers for the judged benchmarks: AlpacaEval 2, Arena-Hard-Auto v0.1, MT-Bench.

Each scorer turns judge outputs in the benchmark's official file format into the figures its
official leaderboard reports. They are what `harness score ...` runs and what the evaluation
pipelines call. This module holds the small helpers they share: where the offline benchmark data
lives, reading JSON / JSONL records with `file:line` errors, and JSON-safe numbers.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from harness.config.loader import ConfigError


def shared_data_dir() -> Path:
    """HARNESS_SHARED_DATA, else `../shared/data` beside the repository (else beside the cwd)."""
    if os.environ.get("HARNESS_SHARED_DATA"):
        return Path(os.environ["HARNESS_SHARED_DATA"])
    beside_repo = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    return beside_repo if beside_repo.exists() else Path.cwd().parent / "shared" / "data"


def read_records(path: str | Path) -> list[dict]:
    """Rows of a JSON array file or a JSONL file. Bad input raises ConfigError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a JSON or JSONL file", file=str(path)) from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"invalid JSON: {err.msg}", file=str(path), line=err.lineno) from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ConfigError(f"invalid JSON: {err.msg}", file=str(path), line=number) from None
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"row {index} is {type(row).__name__}, expected an object", file=str(path))
    return rows


def plain(value: Any) -> Any:
    """numpy scalars -> Python numbers; NaN/inf -> None (JSON has no NaN)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_scorer(args) -> tuple[str, dict]:
    """`harness score BENCHMARK PATH ...`: (text to print, result for --json)."""
    if args.benchmark == "alpaca-eval":
        from harness.evals.scorers import alpaca_eval

        result = alpaca_eval.score_annotations(read_records(args.path), lc_data_path=args.lc_data)
        return alpaca_eval.format_result(result), {key: result[key] for key in alpaca_eval.LEADERBOARD_KEYS}
    if args.benchmark == "arena-hard":
        from harness.evals.scorers import arena_hard

        result = arena_hard.score_bench_dir(args.path, args.judge_model, args.baseline, args.num_rounds)
        _, failures = arena_hard.load_battles(args.path, args.judge_model, args.baseline)
        unjudged = [m for m in arena_hard.answer_models(args.path) if m not in result["models"]]
        return arena_hard.format_leaderboard(result, failures, unjudged), result
    if args.benchmark == "mt-bench":
        from harness.evals.scorers import mt_bench

        result = mt_bench.score_judgments(read_records(args.path))
        return mt_bench.format_result(result), result
    raise ValueError(f"unknown benchmark {args.benchmark!r}")
