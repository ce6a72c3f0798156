"""Benchmarks that print their figures: `harness bench NAME [--json]`.

Each module registers a function with `@bench("name")`; it prints a human-readable report and
returns a JSON-able dict, which the CLI prints as the last stdout line with --json.
"""
from __future__ import annotations

from typing import Callable

from harness.registry import import_listed, registrar

BENCHMARKS: dict[str, Callable] = {}
bench = registrar(BENCHMARKS)
MODULES = ("packing", "dpo", "runner", "report", "search")


def load_benchmarks() -> None:
    import_listed("harness.bench", MODULES, allow_missing=True)
