"""`harness eval`: run a list of benchmarks for one model; write metrics.json and DONE.

Output goes to MODEL_DIR/eval/ (or `--out DIR`, the runner's eval stage directory) as a stage
directory: each benchmark's official-layout files under <benchmark>/, then `manifest.json` (what
ran: weights hash, judge, suite, timings, versions), `metrics.json` (a JSON array of rows
{benchmark, metric, value, stderr, n, failures}: the shape the results store loads) and DONE,
written last. Answers and judgments are cached under cache/, so a rerun (or a run resumed after
a crash) generates nothing again and pays no judge twice.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from harness.config.eval import GenerationConfig
from harness.config.loader import ConfigError, validate
from harness.evals.registry import EvalContext, load_all
from harness.runner import stagedir

log = logging.getLogger(__name__)
JUDGED = {"alpaca-eval": "pairwise", "arena-hard": "pairwise", "mt-bench": "rate"}  # benchmark -> judge task


def default_data_dir() -> Path | None:
    from harness.evals.scorers import shared_data_dir

    path = shared_data_dir()
    return path if path.exists() else None


def parse_suite(text: str | list[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    known = load_all()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(f"unknown benchmark {', '.join(unknown) or '(none given)'} (known: {', '.join(sorted(known))})",
                          file="--suite")
    return list(dict.fromkeys(names))


def build_judge(spec, names: list[str], cache_dir: Path, progress: bool):
    """The judge for the judged benchmarks in `names` (None if there are none), checked to serve them."""
    from harness.judges import get_judge

    needed = [n for n in names if n in JUDGED]
    if not needed:
        return None
    judge = get_judge(spec if spec is not None else "openai", cache_dir=cache_dir, progress=progress)
    for name in needed:
        if JUDGED[name] not in judge.tasks:
            raise ConfigError(f"judge {judge.name!r} cannot {JUDGED[name]} answers, which {name} needs", file="--judge")
    return judge


def run_suite(model_dir: str | Path, suite, *, judge=None, limit: int | None = None, data_dir: str | Path | None = None,
              toy_questions: bool | None = None, generation: dict | None = None, progress: bool = True,
              threads: int | None = None, out_dir: str | Path | None = None) -> list[dict]:
    """Evaluate one model on `suite` (names or "a,b,c"); returns the metric rows it wrote to metrics.json."""
    from harness.data.models import resolve_model_path

    if threads:
        import torch

        torch.set_num_threads(threads)
    names = parse_suite(suite)
    if limit is not None and limit < 1:
        raise ConfigError("must be a positive number", file="--limit")
    validate(GenerationConfig, generation or {}, file="<generation settings>")  # before anything is written
    resolve_model_path(str(model_dir))  # fails early, with a one-line error, on a bad model dir
    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir) / "eval"
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    ctx = EvalContext(model_dir=Path(model_dir), out_dir=out_dir, limit=limit, data_dir=data_dir, progress=progress,
                      judge=build_judge(judge, names, out_dir / "cache", progress),
                      options={"toy_questions": toy_questions, "generation": generation or {}})
    (out_dir / "DONE").unlink(missing_ok=True)  # complete again only when this run is
    benchmarks, rows, timings = load_all(), [], {}
    for name in names:
        start = time.perf_counter()
        rows += benchmarks[name](ctx)
        timings[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.1fs", name, timings[name])
    stagedir.atomic_write_json(out_dir / "manifest.json", {
        "kind": "eval", "config": {"suite": names, "judge": getattr(ctx.judge, "name", None), "limit": limit,
                                   "generation": generation or {}, "toy_questions": toy_questions},
        "model_dir": str(model_dir), "weights_hash": ctx.options.get("weights_hash"),
        "data_dir": str(data_dir) if data_dir else None,
        "toy_questions": {n: _toy(ctx) for n in names if n in JUDGED}, "seconds": sum(timings.values()),
        "benchmark_seconds": timings, "judge_calls": getattr(getattr(ctx.judge, "client", None), "stats", None),
        "versions": stagedir.package_versions(), "git_sha": stagedir.git_sha()})
    stagedir.atomic_write_json(out_dir / "metrics.json", rows)
    stagedir.mark_done(out_dir)
    return rows


def _toy(ctx) -> bool:
    from harness.evals.judged import toy_questions

    return toy_questions(ctx)
