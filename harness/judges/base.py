"""What every judge takes and returns, and the two families of judges.

A benchmark builds items: the structured content (question and answers, for judges that score
answers directly) plus the judge conversation rendered from the benchmark's official prompt
template (for judges that read text), and a verdict format (`protocols.py`) that says how to
parse a judge's output. Every judge returns one `Judgment` per item: the parsed verdict, or
None with the reason; the raw output always rides along. A failure is never a zero or a loss.

- `ChatJudge`: reads the rendered conversation (openai endpoint, local HF model); caches raw
  outputs by (judge identity, request), re-asks when the output holds no verdict.
- `ScoreJudge`: scores each answer by itself (verifier, reward model); pairwise and rating
  verdicts come from the scores and are rendered in the benchmark's own output format.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from tqdm.auto import tqdm

from harness.judges.cache import JudgeCache

log = logging.getLogger(__name__)


@dataclass
class PairwiseItem:
    question: str  # the user prompt both answers respond to
    answer_a: str  # shown first / as "A" / as "m"
    answer_b: str
    messages: list[dict]  # the judge conversation, from the benchmark's template
    protocol: Any  # a pairwise verdict format from harness.judges.protocols


@dataclass
class RatingItem:
    question: str  # the user prompt of the turn being rated
    answer: str  # the answer being rated
    messages: list[dict]
    protocol: Any  # a rating verdict format


@dataclass
class Judgment:
    verdict: Any  # preference / label / rating; None on failure
    raw: str = ""  # the judge's output text, stored with every judgment
    completion: dict | None = None  # the full OpenAI-format choice (logprobs included)
    failure: str | None = None  # why there is no verdict
    note: str | None = None  # how the verdict was read, e.g. "text" when logprobs were missing
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.verdict is not None


class Judge(Protocol):
    name: str
    tasks: frozenset[str]  # subset of {"pairwise", "rate", "score"}

    def pairwise(self, items: Sequence[PairwiseItem], desc: str = "judge") -> list[Judgment]: ...

    def rate(self, items: Sequence[RatingItem], desc: str = "judge") -> list[Judgment]: ...

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]: ...


class CallFailed(Exception):
    """A judge call that failed after its retries (the message is the reason that gets counted)."""


def choice_text(choice: dict | None) -> str:
    if not choice:
        return ""
    message = choice.get("message") or {}
    content = message.get("content")
    return content if isinstance(content, str) else ""


def parse_choice(protocol, choice: dict) -> Judgment:
    text = choice_text(choice)
    if not text.strip() and not (choice.get("logprobs") or {}).get("content"):
        return Judgment(None, text, choice, failure="empty judge output")
    verdict, note, failure = protocol.parse(choice)
    return Judgment(verdict, text, choice, failure=failure, note=note)


class ChatJudge:
    """A judge that completes conversations. Subclasses implement `_complete`."""

    tasks = frozenset({"pairwise", "rate", "score"})
    cacheable = True

    def __init__(self, cfg, cache: JudgeCache | None = None, progress: bool = True):
        self.cfg, self.cache, self.progress = cfg, cache, progress
        self.name = cfg.label

    def identity(self) -> dict:
        """What makes two judges answer the same prompt alike (part of the cache key)."""
        return {"type": self.cfg.type, "model": self.cfg.model, "temperature": self.cfg.temperature}

    def request_options(self, protocol) -> dict:
        max_tokens = min(self.cfg.max_tokens, protocol.max_tokens or self.cfg.max_tokens)
        logprobs = bool(protocol.logprobs and self.cfg.logprobs)
        return {"max_tokens": max_tokens, "logprobs": logprobs, "top_logprobs": self.cfg.top_logprobs if logprobs else 0}

    def _complete(self, requests: list[tuple[list[dict], dict]], done) -> None:
        """Call `done(k, outcome)` once per request k as it finishes: an OpenAI-format choice, or the
        CallFailed that ended it."""
        raise NotImplementedError

    def pairwise(self, items: Sequence[PairwiseItem], desc: str = "judge") -> list[Judgment]:
        return self._judge(items, desc)

    def rate(self, items: Sequence[RatingItem], desc: str = "judge") -> list[Judgment]:
        return self._judge(items, desc)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Pointwise: the 1-10 rating of FastChat's single-answer prompt (None when unparseable)."""
        from harness.judges.protocols import single_rating_items

        return [j.verdict for j in self.rate(single_rating_items(prompts, responses), desc="judge score")]

    def _judge(self, items, desc: str) -> list[Judgment]:
        keys = [self._key(item) for item in items]
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        results: list[Judgment | None] = [None] * len(items)
        for i, item in enumerate(items):
            judgment = parse_choice(item.protocol, hits[keys[i]]) if keys[i] in hits else None
            if judgment is not None and judgment.ok:
                judgment.cached = True
                results[i] = judgment
        pending = [i for i, r in enumerate(results) if r is None]
        bar = tqdm(total=len(items), initial=len(items) - len(pending), desc=desc, disable=not self.progress,
                   unit="judgment")
        for attempt in range(self.cfg.parse_retries + 1):
            if not pending:
                break
            def done(k: int, outcome, batch=tuple(pending), last_try=attempt == self.cfg.parse_retries) -> None:
                """Called as each call finishes: a verdict is cached at once, so a crash keeps it."""
                i = batch[k]
                judgment = (Judgment(None, "", None, failure=str(outcome)) if isinstance(outcome, CallFailed)
                            else parse_choice(items[i].protocol, outcome))
                if judgment.ok and self.cache is not None:
                    self.cache.put(keys[i], outcome)
                if judgment.ok or last_try or isinstance(outcome, CallFailed):
                    results[i] = judgment
                    bar.update()

            self._complete([(items[i].messages, self.request_options(items[i].protocol)) for i in pending], done)
            pending = [i for i in pending if results[i] is None]  # outputs without a verdict: ask once more
        bar.close()
        failed = [r for r in results if not r.ok]
        if failed:
            log.warning("%s: %d of %d judgments failed (first: %s)", self.name, len(failed), len(items),
                        failed[0].failure)
        return results

    def _key(self, item) -> str:
        return JudgeCache.key(self.identity(), item.messages, self.request_options(item.protocol))


class ScoreJudge:
    """A judge that scores (prompt, response) pairs; verdicts are derived from the scores."""

    tasks = frozenset({"pairwise", "score"})
    cacheable = False

    def __init__(self, cfg, cache: JudgeCache | None = None, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.name = cfg.label

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        raise NotImplementedError

    def rating_from_score(self, score: float) -> float:
        raise NotImplementedError(f"judge {self.name} cannot rate on a 1-10 scale")

    def pairwise(self, items: Sequence[PairwiseItem], desc: str = "judge") -> list[Judgment]:
        prompts = [it.question for it in items]
        scores_a = self.score(prompts, [it.answer_a for it in items])
        scores_b = self.score(prompts, [it.answer_b for it in items])
        verdicts = [None if a is None or b is None else it.protocol.from_scores(a, b)
                    for it, a, b in zip(items, scores_a, scores_b)]
        return self._render(items, verdicts, desc)

    def rate(self, items: Sequence[RatingItem], desc: str = "judge") -> list[Judgment]:
        scores = self.score([it.question for it in items], [it.answer for it in items])
        verdicts = [None if s is None else self.rating_from_score(s) for s in scores]
        return self._render(items, verdicts, desc)

    def _render(self, items, verdicts, desc: str) -> list[Judgment]:
        """Write each verdict in the benchmark's output format and read it back through the same parser."""
        out = []
        for item, verdict in tqdm(list(zip(items, verdicts)), desc=desc, disable=not self.progress, unit="judgment"):
            if verdict is None:
                out.append(Judgment(None, "", None, failure=f"{self.name} cannot score this prompt"))
                continue
            out.append(parse_choice(item.protocol, item.protocol.render(verdict)))
        return out

