"""Benchmark registry: `@benchmark("name")` functions that evaluate one model directory.

A benchmark takes an EvalContext and returns metric rows
`{"benchmark", "metric", "value", "stderr", "n"}` (plus optional "failures"); it writes its
official-layout files under `ctx.out_dir / <benchmark>/`. Adding a benchmark is one file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from harness.registry import import_listed, registrar

BENCHMARKS: dict[str, Callable[["EvalContext"], list[dict]]] = {}
# modules that register benchmarks, imported by load_all() (their imports are heavy, so lazily)
MODULES = ["openllm", "alpaca_eval", "arena_hard", "mt_bench"]
benchmark = registrar(BENCHMARKS)


def load_all() -> dict[str, Callable[["EvalContext"], list[dict]]]:
    import_listed("harness.evals", MODULES)
    return BENCHMARKS


@dataclass
class EvalContext:
    model_dir: Path  # a model directory (or a stage directory holding model/)
    out_dir: Path  # MODEL_DIR/eval
    limit: int | None = None  # at most this many prompts/questions per benchmark
    data_dir: Path | None = None  # local copies of benchmark data (offline)
    judge: Any = None  # a judge from harness.judges (None: benchmark default)
    progress: bool = True
    options: dict = field(default_factory=dict)  # per-benchmark extras (e.g. generation settings)

    @cached_property
    def model_and_tokenizer(self):
        from harness.config.schema import ModelSpec
        from harness.data.models import load_model

        return load_model(ModelSpec(path=str(self.model_dir)), for_training=False)


def metric(benchmark_name: str, name: str, value: float | None, stderr: float | None = None, n: int | None = None,
           failures: int = 0) -> dict:
    """One metrics.json row. `value` is None when nothing could be scored (e.g. every judgment failed)."""
    return {"benchmark": benchmark_name, "metric": name, "value": None if value is None else float(value),
            "stderr": None if stderr is None else float(stderr), "n": n, "failures": failures}


@benchmark("toy")
def toy_benchmark(ctx: EvalContext) -> list[dict]:
    from harness.evals.toy import toy_eval
    from harness.runner.stagedir import atomic_write_json

    model, tokenizer = ctx.model_and_tokenizer
    metrics, records = toy_eval(model, tokenizer, n=ctx.limit or 300, progress=ctx.progress)
    atomic_write_json(ctx.out_dir / "toy" / "answers.json", records)
    return [{**m, "failures": 0} for m in metrics]
