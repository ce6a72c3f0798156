"""Verdict formats: parse an LLM judge's output, render a score judge's verdict the same way."""
from __future__ import annotations

import math

import pytest

from harness.judges.protocols import PREFERENCE, RATING, VERDICT_LABEL, make_choice


def logprob_choice(p_m: float) -> dict:
    return make_choice("m", [{"token": "m", "logprob": math.log(p_m)}, {"token": "M", "logprob": math.log(1 - p_m)},
                             {"token": "The", "logprob": -9.0}])


def test_preference_is_2_minus_p_m_from_logprobs_as_alpaca_eval_computes_it():
    verdict, note, failure = PREFERENCE.parse(logprob_choice(0.25))
    assert verdict == pytest.approx(1.75) and note == "logprobs" and failure is None


def test_preference_falls_back_to_the_text_verdict_and_notes_it():
    assert PREFERENCE.parse(make_choice("M")) == (2.0, "text", None)
    assert PREFERENCE.parse(make_choice(" m")) == (1.0, "text", None)
    # logprobs that name neither token: the text decides
    assert PREFERENCE.parse(make_choice("M", [{"token": "Based", "logprob": -0.1}]))[:2] == (2.0, "text")
    verdict, _, failure = PREFERENCE.parse(make_choice("Model M is better"))
    assert verdict is None and failure.startswith("unparseable")


def test_labels_and_ratings_use_the_scorers_parsers():
    assert VERDICT_LABEL.parse(make_choice("...so my final verdict is: [[B>>A]]"))[0] == "B>>A"
    assert VERDICT_LABEL.parse(make_choice("[[A>B]] or maybe [[B>A]]"))[0] is None  # conflicting labels
    assert RATING.parse(make_choice("Rating: [[8.5]]"))[0] == 8.5
    assert RATING.parse(make_choice("I'd say eight"))[2] == "unparseable: no [[rating]]"


@pytest.mark.parametrize("protocol, verdicts", [(PREFERENCE, [1.0, 1.5, 2.0]),
                                                (VERDICT_LABEL, ["A>>B", "A>B", "A=B", "B>A", "B>>A"]),
                                                (RATING, [1.0, 3.25, 10.0])])
def test_rendered_verdicts_parse_back_unchanged(protocol, verdicts):
    for verdict in verdicts:
        parsed = protocol.parse(protocol.render(verdict))[0]
        assert parsed == (pytest.approx(verdict) if isinstance(verdict, float) else verdict)


def test_pairwise_verdicts_from_scores():
    assert [VERDICT_LABEL.from_scores(a, b) for a, b in [(1, 0), (0.25, 0), (0, 0), (0, 0.25), (0, 1)]] == \
        ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
    assert [PREFERENCE.from_scores(a, b) for a, b in [(1, 0), (0.5, 0.5), (0, 1)]] == [1.0, 1.5, 2.0]
