"""The `reward_model` judge: a real sequence-classification model built from the toy model."""
from __future__ import annotations

import pytest
import torch

from harness.config.eval import JudgeConfig
from harness.config.loader import ConfigError
from harness.judges import get_judge
from harness.judges.base import PairwiseItem
from harness.judges.protocols import VERDICT_LABEL


@pytest.fixture(scope="module")
def reward_model_dir(toy_model_dir, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rm")
    AutoModelForSequenceClassification.from_pretrained(toy_model_dir, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(toy_model_dir).save_pretrained(out)
    return out


def test_scores_are_finite_and_do_not_depend_on_batching(reward_model_dir):
    torch.set_num_threads(1)
    judge = get_judge(JudgeConfig(type="reward_model", model=str(reward_model_dir), batch_size=4), progress=False)
    prompts = ["add: 1 + 2", "reverse: a b c d e f", "sort: 3 1 2"]
    responses = ["3", "f e d c b a and some more words", "1 2 3"]
    batched = judge.score(prompts, responses)
    one_by_one = [judge.score([p], [r])[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(batched)) == 3


def test_pairwise_by_score_and_no_ratings(reward_model_dir):
    judge = get_judge(JudgeConfig(type="reward_model", model=str(reward_model_dir)), progress=False)
    a, b = judge.score(["add: 1 + 2"] * 2, ["3", "4"])
    [judgment] = judge.pairwise([PairwiseItem("add: 1 + 2", "3", "4", [], VERDICT_LABEL)])
    assert judgment.verdict == VERDICT_LABEL.from_scores(a, b)
    assert "rate" not in judge.tasks
    from harness.evals.suite import build_judge

    with pytest.raises(ConfigError, match="cannot rate answers, which mt-bench needs"):
        build_judge(JudgeConfig(type="reward_model", model=str(reward_model_dir)), ["mt-bench"], None, False)
