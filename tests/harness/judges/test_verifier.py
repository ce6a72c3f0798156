"""The `verifier` judge: toy-lab verdicts in each benchmark's own output format."""
from __future__ import annotations

import pytest

from harness.judges import get_judge
from harness.judges.base import PairwiseItem, RatingItem
from harness.judges.protocols import PREFERENCE, RATING, VERDICT_LABEL

PROMPT = "reverse: a b c d"  # gold answer: "d c b a"


def pair(a: str, b: str, protocol) -> PairwiseItem:
    return PairwiseItem(PROMPT, a, b, [], protocol)


def test_pairwise_prefers_the_verified_answer_in_every_format():
    judge = get_judge("verifier", progress=False)
    correct, padded, wrong = "d c b a", "the answer is d c b a", "a b c d"
    labels = judge.pairwise([pair(correct, wrong, VERDICT_LABEL), pair(wrong, correct, VERDICT_LABEL),
                             pair(padded, wrong, VERDICT_LABEL), pair(wrong, wrong, VERDICT_LABEL)])
    assert [j.verdict for j in labels] == ["A>>B", "B>>A", "A>B", "A=B"]
    assert "[[A>>B]]" in labels[0].raw  # written as an Arena-Hard judge writes it, read by its parser
    prefs = judge.pairwise([pair(correct, wrong, PREFERENCE), pair(wrong, correct, PREFERENCE),
                            pair(correct, correct, PREFERENCE)])
    assert [j.verdict for j in prefs] == pytest.approx([1.0, 2.0, 1.5])
    assert all(j.note == "logprobs" for j in prefs)


def test_rating_follows_correctness_and_score_is_the_verifier_score():
    judge = get_judge("verifier", progress=False)
    items = [RatingItem(PROMPT, answer, [], RATING) for answer in ("d c b a", "the answer is d c b a", "nope")]
    assert [j.verdict for j in judge.rate(items)] == [10.0, 3.25, 1.0]
    assert judge.score([PROMPT, PROMPT], ["d c b a", "x"]) == [1.0, 0.0]


def test_prompts_that_are_not_toy_prompts_are_failures_not_losses():
    judge = get_judge("verifier", progress=False)
    assert judge.score(["What is love?"], ["baby don't hurt me"]) == [None]
    [judgment] = judge.pairwise([PairwiseItem("What is love?", "a", "b", [], VERDICT_LABEL)])
    assert judgment.verdict is None and "cannot score" in judgment.failure
