"""Benchmarks that print their figures: `harness bench NAME [--json]`.

Each module registers a function with `@bench("name")`; it prints a human-readable report and
returns a JSON-able dict, which the CLI prints as the last stdout line with --json.
"""
from __future__ import annotations

import importlib
from typing import Callable

BENCHMARKS: dict[str, Callable] = {}
MODULES = ("packing", "dpo", "runner", "report", "search")


def bench(name: str):
    def register(fn):
        BENCHMARKS[name] = fn
        return fn
    return register


def load_benchmarks() -> None:
    for module in MODULES:
        try:
            importlib.import_module(f"harness.bench.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"harness.bench.{module}":
                raise
