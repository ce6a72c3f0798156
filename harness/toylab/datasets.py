"""Toy datasets registered by name, so grids vary them like real datasets (`toy:NAME` sources).

Each builder takes (size, seed) and returns rows in the same schemas real data uses:
- SFT rows: {"messages": [...], "source": str}
- preference rows: {"prompt", "chosen", "rejected", "source"} with prompt/answers as plain text
- eval rows: {"prompt", "answer", "task"}
"""
from __future__ import annotations

import random
from typing import Callable

from harness.toylab.tasks import TASKS, Example, padded_answer, sample_examples, wrong_answer

Builder = Callable[[int, int], list[dict]]
TOY_DATASETS: dict[str, tuple[Builder, int]] = {}  # name -> (builder, default size)

ALL_TASKS = sorted(TASKS)
MAX_TOY_ROWS = 100_000  # generators are unbounded; a larger size is an input error, not a long wait


def toy_dataset(name: str, default_size: int):
    def register(fn: Builder) -> Builder:
        TOY_DATASETS[name] = (fn, default_size)
        return fn
    return register


def build_toy(name: str, size: int | None = None, seed: int = 0) -> list[dict]:
    if name not in TOY_DATASETS:
        raise KeyError(f"unknown toy dataset {name!r} (known: {', '.join(sorted(TOY_DATASETS))})")
    builder, default = TOY_DATASETS[name]
    if size is not None and size > MAX_TOY_ROWS:
        raise ValueError(f"size {size} is larger than the {MAX_TOY_ROWS} rows toy datasets provide")
    return builder(size or default, seed)


def _chat(*examples: Example) -> list[dict]:
    messages = []
    for ex in examples:
        messages += [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": ex.answer}]
    return messages


def _sft_rows(tasks: list[str], n: int, seed: int, multi_turn: float) -> list[dict]:
    examples = sample_examples(tasks, 2 * n, seed, heldout=False)
    rng = random.Random(seed)
    rows, i = [], 0
    while len(rows) < n:
        take = 2 if (rng.random() < multi_turn and i + 1 < len(examples)) else 1
        group = examples[i:i + take]
        rows.append({"messages": _chat(*group), "source": "+".join(e.task for e in group)})
        i += take
    return rows


@toy_dataset("sft_mix", 4000)
def sft_mix(n: int, seed: int) -> list[dict]:
    """All task families, 20% of rows are two-turn chats."""
    return _sft_rows(ALL_TASKS, n, seed, multi_turn=0.2)


def _pref_rows(tasks: list[str], n: int, seed: int, padded_share: float) -> list[dict]:
    rng = random.Random(f"prefs:{seed}")
    rows = []
    for ex in sample_examples(tasks, n, seed + 7919, heldout=False):
        padded = rng.random() < padded_share
        rejected = padded_answer(ex) if padded else wrong_answer(ex, rng)
        kind = "concise_vs_padded" if padded else "correct_vs_wrong"
        rows.append({"prompt": ex.prompt, "chosen": ex.answer, "rejected": rejected, "source": ex.task, "kind": kind})
    return rows


@toy_dataset("prefs", 2000)
def prefs(n: int, seed: int) -> list[dict]:
    """Verifier-labelled pairs over all tasks: correct vs wrong (75%) and concise vs padded (25%)."""
    return _pref_rows(ALL_TASKS, n, seed, padded_share=0.25)


@toy_dataset("eval", 300)
def eval_prompts(n: int, seed: int) -> list[dict]:
    """Held-out prompts (never in any training set), balanced over task families."""
    return [{"prompt": e.prompt, "answer": e.answer, "task": e.task} for e in sample_examples(ALL_TASKS, n, seed, heldout=True)]


def _register_per_task() -> None:
    for name in ALL_TASKS:
        toy_dataset(f"sft_{name}", 1000)(lambda n, seed, t=name: _sft_rows([t], n, seed, multi_turn=0.0))
        toy_dataset(f"prefs_{name}", 500)(lambda n, seed, t=name: _pref_rows([t], n, seed, padded_share=0.25))
        toy_dataset(f"eval_{name}", 100)(
            lambda n, seed, t=name: [{"prompt": e.prompt, "answer": e.answer, "task": e.task}
                                     for e in sample_examples([t], n, seed, heldout=True)])


_register_per_task()
