"""Decorator registries, as lm-eval has them: `@bench("dpo")`, `@judge("openai")`, `@benchmark("toy")` ...

Each registry is a plain dict filled by a decorator made with `registrar(table)`; modules that
register on import are loaded with `import_listed`. Adding an entry is one file.
"""
from __future__ import annotations

import importlib
from typing import Callable, Iterable


def registrar(table: dict) -> Callable[[str], Callable]:
    """`register = registrar(TABLE)`; then `@register("name")` stores the decorated object in TABLE."""
    def named(name: str):
        def register(obj):
            table[name] = obj
            return obj
        return register
    return named


def import_listed(package: str, modules: Iterable[str], allow_missing: bool = False) -> None:
    """Import `package.module` for each listed module (they register themselves). With allow_missing,
    a listed module that does not exist is skipped; any other import error surfaces."""
    for module in modules:
        name = f"{package}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not (allow_missing and err.name == name):
                raise
