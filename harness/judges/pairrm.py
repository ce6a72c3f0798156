"""`pairrm`: llm-blender's PairRM ranker (arXiv 2306.02561), for online DPO's best-vs-worst.

PairRM compares responses to the same prompt with each other, so it has no absolute score: runs
of consecutive identical prompts (online DPO sends a prompt's n samples together) are ranked as
one group, and each response scores its PairRM group score (higher is better; comparable within
its group only). A response alone in its group gets no score. Needs llm-blender, which is not a
dependency of this package (it pins old transformers versions): selecting `pairrm` without it is a
one-line config error.
"""
from __future__ import annotations

from typing import Sequence

from harness.config.loader import ConfigError
from harness.judges import judge
from harness.judges.base import ScoreJudge

DEFAULT_MODEL = "llm-blender/PairRM"


def prompt_runs(prompts: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive identical prompts."""
    runs, start = [], 0
    for i in range(1, len(prompts) + 1):
        if i == len(prompts) or prompts[i] != prompts[start]:
            runs.append((start, i))
            start = i
    return runs


@judge("pairrm")
class PairRMJudge(ScoreJudge):
    tasks = frozenset({"score"})

    def __init__(self, cfg, cache=None, progress: bool = True):
        try:
            import llm_blender
        except ImportError:
            raise ConfigError("judge pairrm needs the llm-blender package, which is not installed "
                              "(pip install git+https://github.com/yuchenlin/LLM-Blender.git)", key="type") from None
        super().__init__(cfg, cache, progress)
        self.blender = llm_blender.Blender()
        self.blender.loadranker(cfg.model or DEFAULT_MODEL)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        runs = [(a, b) for a, b in prompt_runs(prompts) if b - a >= 2]
        scores: list[float | None] = [None] * len(responses)
        if not runs:
            return scores
        ranked = self.blender.rank([prompts[a] for a, _ in runs], [list(responses[a:b]) for a, b in runs],
                                   return_scores=True, batch_size=self.cfg.batch_size)
        for (a, b), group in zip(runs, ranked):
            scores[a:b] = [float(s) for s in group]
        return scores
