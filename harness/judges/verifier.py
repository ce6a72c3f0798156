"""`verifier`: the toy lab's verifier as a judge, for toy-lab prompts.

Pointwise it returns the verifier score (1 exact, 0.25 correct but padded, 0 wrong). Pairwise it
prefers the higher score (a tie when equal); a rating is 1 + 9 * score. Verdicts are written in
each benchmark's own output format, so AlpacaEval, Arena-Hard and MT-Bench run on toy question
sets on CPU, with meaningful verdicts, through the same parsers and scorers. Prompts that are not
toy prompts get no verdict (counted as failures).
"""
from __future__ import annotations

from typing import Sequence

from harness.judges import judge
from harness.judges.base import ScoreJudge
from harness.toylab.tasks import solve, verify


@judge("verifier")
class VerifierJudge(ScoreJudge):
    tasks = frozenset({"pairwise", "rate", "score"})

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        return [None if solve(p) is None else verify(p, r).score for p, r in zip(prompts, responses)]

    def rating_from_score(self, score: float) -> float:
        return 1.0 + 9.0 * score
