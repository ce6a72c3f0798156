"""The `toy` benchmark: held-out toy prompts, greedy answers, scored by the verifier."""
from __future__ import annotations

import math
from collections import defaultdict

from harness.evals.generate import generate
from harness.toylab.datasets import build_toy
from harness.toylab.tasks import verify


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def toy_eval(model, tokenizer, n: int = 300, seed: int = 0, max_new_tokens: int = 24, batch_size: int = 100,
             progress: bool = False, dataset: str = "eval") -> tuple[list[dict], list[dict]]:
    """Return (metric rows, per-prompt records). Metric rows: benchmark, metric, value, stderr, n.
    `dataset` is a held-out toy set: `eval` (all tasks) or `eval_<task>`."""
    rows = build_toy(dataset, n, seed)
    answers = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
                       batch_size=batch_size, progress=progress, desc="toy eval")
    records, by_task = [], defaultdict(list)
    for row, (answer,) in zip(rows, answers):
        verdict = verify(row["prompt"], answer)
        records.append({**row, "output": answer, "correct": verdict.correct, "score": verdict.score})
        by_task[row["task"]].append(verdict.correct)
    metrics = []
    overall = sum(r["correct"] for r in records) / len(records)
    metrics.append({"benchmark": "toy", "metric": "accuracy", "value": overall,
                    "stderr": _binomial_se(overall, len(records)), "n": len(records)})
    for task_name, hits in sorted(by_task.items()):
        acc = sum(hits) / len(hits)
        metrics.append({"benchmark": "toy", "metric": f"accuracy_{task_name}", "value": acc,
                        "stderr": _binomial_se(acc, len(hits)), "n": len(hits)})
    return metrics, records
