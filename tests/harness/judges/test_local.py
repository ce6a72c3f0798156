"""The `local` judge: a real HF causal LM (the toy model) through the official prompt templates."""
from __future__ import annotations

import torch

from harness.config.eval import JudgeConfig
from harness.judges import get_judge
from harness.judges.base import PairwiseItem
from harness.judges.prompts import alpaca_eval_template, import_alpaca_eval
from harness.judges.protocols import PREFERENCE, single_rating_items


def alpaca_item(instruction: str, a: str, b: str) -> PairwiseItem:
    utils = import_alpaca_eval().utils
    text = alpaca_eval_template().replace("{instruction}", instruction).replace("{output_1}", a).replace("{output_2}", b)
    return PairwiseItem(instruction, a, b, utils.prompt_to_chatml(text), PREFERENCE)


def test_local_judge_returns_logprobs_raw_text_and_counts_what_it_cannot_parse(toy_model_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = JudgeConfig(type="local", model=str(toy_model_dir), max_tokens=6, batch_size=2)
    judge = get_judge(cfg, cache_dir=tmp_path, progress=False)
    items = [alpaca_item("add: 12 + 30", "42", "41"), alpaca_item("sort: 3 1 2", "1 2 3", "3 2 1")]
    judgments = judge.pairwise(items)
    for j in judgments:
        top = j.completion["logprobs"]["content"][0]["top_logprobs"] if j.completion else []
        assert len(top) == 5 and all(t["logprob"] <= 0 for t in top)
        assert j.ok or j.failure.startswith("unparseable")  # an untrained judge: counted, never a loss
    ratings = judge.rate(single_rating_items(["add: 1 + 1"], ["2"]))
    assert ratings[0].ok or ratings[0].failure
    again = judge.pairwise(items)  # greedy: the same outputs
    assert [j.raw for j in again] == [j.raw for j in judgments]
    assert all(j.cached for j, first in zip(again, judgments) if first.ok)
