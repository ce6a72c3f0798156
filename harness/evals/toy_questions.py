"""Toy question sets for the judged benchmarks, so AlpacaEval, Arena-Hard and MT-Bench run on CPU.

Questions are held-out toy prompts (never in a training set). The baseline, `toy_reference`,
answers a fixed half of them correctly (chosen by a hash of the prompt) and the rest with a
plausible wrong answer, so a model's win rate against it is meaningful, neither 0 nor 100 by
construction. MT-Bench questions are two toy prompts (two turns); their category follows the
first turn's task, mapped onto MT-Bench categories so that `add`/`count`/`sort` questions are
judged with reference answers (the gold answers), like math/reasoning/coding.
"""
from __future__ import annotations

import hashlib
import random

from harness.evals.judged import short_hash
from harness.toylab.datasets import build_toy
from harness.toylab.tasks import Example, solve, task_of, wrong_answer

BASELINE = "toy_reference"
REFERENCE_MODEL = "toy_gold"
MT_BENCH_CATEGORY = {"add": "math", "count": "reasoning", "sort": "coding", "reverse": "writing",
                     "lookup": "extraction"}
SEEDS = {"alpaca-eval": 101, "arena-hard": 202, "mt-bench": 303}  # apart from the `toy` benchmark's seed 0


def baseline_answer(prompt: str) -> str:
    """Correct for half the prompts (by hash), a plausible wrong answer for the others."""
    gold = solve(prompt)
    if hashlib.sha256(prompt.encode()).digest()[0] % 2 == 0:
        return gold
    return wrong_answer(Example(task_of(prompt), prompt, gold), random.Random(prompt))


def prompts(benchmark: str, n: int) -> list[dict]:
    return build_toy("eval", n, SEEDS[benchmark])


def mt_bench_questions(n: int) -> tuple[list[dict], dict[int, dict]]:
    """(FastChat-format questions, reference answers by question_id) for n two-turn toy questions."""
    rows = prompts("mt-bench", 2 * n)
    questions, references = [], {}
    for qid, (first, second) in enumerate(zip(rows[0::2], rows[1::2]), start=1):
        questions.append({"question_id": qid, "category": MT_BENCH_CATEGORY[first["task"]],
                          "turns": [first["prompt"], second["prompt"]]})
        references[qid] = {"question_id": qid, "answer_id": short_hash(first["prompt"] + second["prompt"]),
                           "model_id": REFERENCE_MODEL,
                           "choices": [{"index": 0, "turns": [first["answer"], second["answer"]]}], "tstamp": 0.0}
    return questions, references
