"""Verdict formats: how a benchmark reads a judge's output, and how a score-based judge writes one.

Each format has `parse(choice) -> (verdict, note, failure)` for an OpenAI-format choice, and
`render(verdict) -> choice` so the verifier and reward-model judges answer in the same format
and their verdicts go through the same parser and scorers as an LLM judge's.
- `PREFERENCE` (AlpacaEval 2, weighted): preference in [1, 2] for the order shown, from the
  logprobs of the "m"/"M" tokens; the text verdict when a judge returns no logprobs (noted).
- `VERDICT_LABEL` (Arena-Hard): `[[A>>B]]` ... `[[B>>A]]`.
- `RATING` (MT-Bench single grading): `[[rating]]`, 1 to 10.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

from harness.judges.base import RatingItem, choice_text

Parsed = tuple  # (verdict | None, note | None, failure | None)


def make_choice(text: str, top_logprobs: list[dict] | None = None) -> dict:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    if top_logprobs is not None:
        first = max(top_logprobs, key=lambda t: t["logprob"])
        choice["logprobs"] = {"content": [{**first, "top_logprobs": top_logprobs}]}
    return choice


def first_top_logprobs(choice: dict) -> list[dict] | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    return content[0].get("top_logprobs") if content else None


class Preference:
    """AlpacaEval's weighted judge: 2 - P("m") over P("m") + P("M"); "m" names answer_a (output_1)."""

    name = "alpaca_eval_weighted"
    max_tokens = 1  # AlpacaEval's completions_kwargs for weighted_alpaca_eval_gpt4_turbo
    logprobs = True
    TEXT = re.compile(r"""^\s*["'`]?([mM])(?![A-Za-z0-9])""")

    def parse(self, choice: dict) -> Parsed:
        top = first_top_logprobs(choice)
        if top:
            from harness.judges.prompts import import_alpaca_eval

            parser = import_alpaca_eval().completion_parsers.logprob_parser
            value = parser({"logprobs": {"content": [{"top_logprobs": top}]}}, numerator_token="m",
                           denominator_tokens=["m", "M"], is_binarize=False, log_prob_index=0)[0]
            if not math.isnan(value):
                return float(value), "logprobs", None
        match = self.TEXT.match(choice_text(choice))
        if match:
            return (1.0 if match.group(1) == "m" else 2.0), "text", None
        return None, None, "unparseable: no 'm'/'M' in the logprobs or the text"

    def from_scores(self, a: float, b: float) -> float:
        return 1.0 if a > b else 2.0 if b > a else 1.5

    def render(self, preference: float) -> dict:
        p_m = 2.0 - preference
        top = [{"token": t, "logprob": math.log(p)} for t, p in (("m", p_m), ("M", 1.0 - p_m)) if p > 0]
        return make_choice("m" if p_m >= 0.5 else "M", top)


class VerdictLabel:
    """Arena-Hard's five labels, parsed by the Arena-Hard scorer's own parser."""

    name = "arena_hard_label"
    max_tokens = None  # the judge config's (Arena-Hard v0.1: 4096)
    logprobs = False

    def parse(self, choice: dict) -> Parsed:
        from harness.evals.scorers.arena_hard import parse_verdict

        label = parse_verdict(choice_text(choice))
        if label is None:
            return None, None, "unparseable: no single [[verdict]] label"
        return label, None, None

    def from_scores(self, a: float, b: float) -> str:
        diff = a - b
        if diff == 0:
            return "A=B"
        strength = ">>" if abs(diff) >= 0.5 else ">"
        return f"A{strength}B" if diff > 0 else f"B{strength}A"

    def render(self, label: str) -> dict:
        return make_choice(f"My final verdict is: [[{label}]]")


class Rating:
    """FastChat's single-answer grading: a 1-10 rating in `[[rating]]`."""

    name = "mt_bench_rating"
    max_tokens = 2048  # FastChat's run_judge_single
    logprobs = False

    def parse(self, choice: dict) -> Parsed:
        from harness.evals.scorers.mt_bench import parse_rating

        rating = parse_rating(choice_text(choice))
        if rating is None:
            return None, None, "unparseable: no [[rating]]"
        return float(rating), None, None

    def render(self, rating: float) -> dict:
        return make_choice(f"Rating: [[{rating:g}]]")


PREFERENCE, VERDICT_LABEL, RATING = Preference(), VerdictLabel(), Rating()


def single_rating_items(prompts: Sequence[str], responses: Sequence[str]) -> list[RatingItem]:
    """Pointwise judging of (prompt, response) pairs with FastChat's general single-answer prompt."""
    from harness.judges.prompts import fastchat_prompts

    template = fastchat_prompts()["single-v1"]
    return [RatingItem(p, r, [{"role": "system", "content": template["system_prompt"]},
                              {"role": "user", "content": template["prompt_template"].format(question=p, answer=r)}],
                       RATING) for p, r in zip(prompts, responses)]
