"""Toy task families: seeded generators, a solver that recomputes the gold answer from
any prompt, and the verifier that scores any model's answer.

Every prompt is `<task>: <payload>`, and its gold answer is a pure function of the prompt, so
the verifier needs no stored labels and works on answers sampled by any model.
Held-out prompts are selected by a hash of the prompt text, so training sets never contain them.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable

LETTERS = "abcdefghijklmnopqrstuvwxyz"
COUNT_ALPHABET = "abcde"


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    answer: str


@dataclass(frozen=True)
class Verdict:
    correct: bool  # exact answer
    contains_gold: bool  # gold answer present, possibly padded with extra text
    score: float  # 1 exact, 0.25 correct-but-padded, 0 wrong


Generator = Callable[[random.Random], str]  # returns the payload of a prompt
Solver = Callable[[str], str]  # payload -> gold answer

TASKS: dict[str, tuple[Generator, Solver]] = {}


def task(name: str, solver: Solver):
    def register(gen: Generator) -> Generator:
        TASKS[name] = (gen, solver)
        return gen
    return register


def _spaced(items) -> str:
    return " ".join(str(x) for x in items)


@task("reverse", solver=lambda p: _spaced(p.split()[::-1]))
def _reverse(rng: random.Random) -> str:
    return _spaced(rng.choice(LETTERS) for _ in range(rng.randint(4, 6)))


@task("sort", solver=lambda p: _spaced(sorted(p.split(), key=int)))
def _sort(rng: random.Random) -> str:
    return _spaced(rng.randint(0, 9) for _ in range(rng.randint(4, 6)))


def _solve_add(payload: str) -> str:
    a, b = payload.split("+")
    return str(int(a) + int(b))


@task("add", solver=_solve_add)
def _add(rng: random.Random) -> str:
    return f"{rng.randint(10, 99)} + {rng.randint(10, 99)}"


def _solve_count(payload: str) -> str:
    target, items = payload.split(":", 1)
    return str(items.split().count(target.strip()))


@task("count", solver=_solve_count)
def _count(rng: random.Random) -> str:
    target = rng.choice(COUNT_ALPHABET)
    return f"{target}: " + _spaced(rng.choice(COUNT_ALPHABET) for _ in range(rng.randint(5, 8)))


def _solve_lookup(payload: str) -> str:
    key, table = payload.split(":", 1)
    return dict(pair.split("=") for pair in table.split())[key.strip()]


@task("lookup", solver=_solve_lookup)
def _lookup(rng: random.Random) -> str:
    keys = rng.sample(LETTERS[:8], rng.randint(3, 5))
    table = " ".join(f"{k}={rng.randint(0, 9)}" for k in keys)
    return f"{rng.choice(keys)}: {table}"


PROMPT_RE = re.compile(r"^\s*(\w+):\s*(.*?)\s*$", re.S)


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    match = PROMPT_RE.match(prompt)
    if not match or match.group(1) not in TASKS:
        return None
    return match.group(1), match.group(2)


def solve(prompt: str) -> str | None:
    """Gold answer of a toy prompt, or None if the prompt is not a toy prompt."""
    parsed = parse_prompt(prompt)
    if parsed is None:
        return None
    name, payload = parsed
    try:
        return TASKS[name][1](payload)
    except (ValueError, KeyError, IndexError):
        return None


def task_of(prompt: str) -> str | None:
    parsed = parse_prompt(prompt)
    return parsed[0] if parsed else None


def normalize(text: str) -> str:
    return " ".join(text.strip().split())


def verify(prompt: str, answer: str) -> Verdict:
    gold = solve(prompt)
    if gold is None:
        return Verdict(False, False, 0.0)
    got = normalize(answer)
    if got == gold:
        return Verdict(True, True, 1.0)
    padded = re.search(rf"(?<![\w]){re.escape(gold)}(?![\w])", got) is not None
    return Verdict(False, padded, 0.25 if padded else 0.0)


def is_heldout(prompt: str) -> bool:
    """One prompt in eight (by hash) is reserved for evaluation."""
    return hashlib.sha1(prompt.encode()).digest()[0] % 8 == 0


def make_prompt(name: str, rng: random.Random) -> str:
    return f"{name}: {TASKS[name][0](rng)}"


def sample_examples(tasks: list[str], n: int, seed: int, heldout: bool) -> list[Example]:
    """`n` distinct-enough examples cycling over `tasks`, from the train or held-out side of the split."""
    rng = random.Random(f"{seed}:{','.join(tasks)}:{heldout}")
    out: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        name = tasks[len(out) % len(tasks)]
        prompt = make_prompt(name, rng)
        if is_heldout(prompt) != heldout or (heldout and prompt in seen and attempts < 50 * n):
            continue
        seen.add(prompt)
        out.append(Example(name, prompt, solve(prompt)))
    return out


def wrong_answer(example: Example, rng: random.Random) -> str:
    """A plausible but wrong answer (the rejected side of correct-vs-wrong pairs)."""
    for _ in range(20):
        tokens = example.answer.split()
        if example.task in ("add", "count") or len(tokens) == 1:
            candidate = str(max(0, int(example.answer) + rng.choice([-10, -2, -1, 1, 2, 10])))
        else:
            i, j = rng.sample(range(len(tokens)), 2)
            tokens[i], tokens[j] = tokens[j], tokens[i]
            candidate = _spaced(tokens if rng.random() < 0.7 else tokens[:-1])
        if candidate != example.answer:
            return candidate
    return example.answer + " 0"


def padded_answer(example: Example) -> str:
    """The correct answer buried in filler (the rejected side of concise-vs-padded pairs)."""
    return f"the answer is {example.answer} . so it is {example.answer}"
