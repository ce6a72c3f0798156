"""AlpacaEval 2 pipeline: the official prompt and output order, checked against published annotations."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from judge_server import JudgeServer

from harness.config.eval import JudgeConfig
from harness.evals import alpaca_eval, toy_questions
from harness.evals.registry import EvalContext
from harness.judges import get_judge
from harness.judges.protocols import PREFERENCE
from harness.toylab.tasks import solve

MODEL = "gemma-7b-it"  # leaderboard win rate 6.94 (weighted_alpaca_eval_gpt4_turbo)


@pytest.fixture(scope="module")
def published(shared_data):
    results = shared_data / "alpaca_eval" / "results"
    eval_set = json.loads((results / "gpt4_1106_preview" / "model_outputs.json").read_text())
    annotations = json.loads((results / MODEL / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json").read_text())
    board = pd.read_csv(shared_data / "alpaca_eval" / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", index_col=0)
    return eval_set, annotations, board.loc[MODEL]


def test_output_order_and_logprob_parsing_reproduce_every_published_preference(published):
    _, annotations, _ = published
    for row in annotations:
        shown, _, _ = PREFERENCE.parse(row["raw_completion"])
        expected = 3.0 - shown if alpaca_eval.is_switched(row["instruction"]) else shown
        assert expected == pytest.approx(row["preference"], abs=1e-9)


def test_a_judge_replaying_the_published_completions_gives_the_leaderboard_win_rate(published, shared_data, tmp_path):
    """The full pipeline (prompt, order, HTTP judge, parse, unswitch, scorer) on the 805 published judgments."""
    eval_set, annotations, board = published
    by_instruction = {row["instruction"]: row for row in annotations}
    prompts_seen = []

    def replay(body):
        prompt = body["messages"][-1]["content"]
        prompts_seen.append(prompt)
        instruction = re.search(r'"instruction": """(.*?)""",\n}', prompt, re.S).group(1)
        choice = by_instruction[instruction]["raw_completion"]
        return choice["message"]["content"], choice["logprobs"]["content"][0]["top_logprobs"]

    outputs = [{"instruction": r["instruction"], "output": r["output_2"], "generator": MODEL} for r in annotations]
    with JudgeServer(responder=replay) as server:
        judge = get_judge(JudgeConfig(base_url=server.base_url, api_key_env=None, concurrency=8, cache=False),
                          progress=False)
        ours = alpaca_eval.annotate(eval_set, outputs, judge)
    assert [a["preference"] for a in ours] == pytest.approx([a["preference"] for a in annotations], abs=1e-9)
    assert all(a["verdict_source"] == "logprobs" for a in ours)
    ctx = EvalContext(model_dir=tmp_path, out_dir=tmp_path, data_dir=shared_data)
    scores = alpaca_eval.score(ctx, ours)
    assert scores["win_rate"] == pytest.approx(board["win_rate"], abs=1e-9)
    assert scores["length_controlled_winrate"] == pytest.approx(board["length_controlled_winrate"], abs=1e-5)
    # the prompt is alpaca_eval's template with the outputs in its seeded order
    first = next(p for p in prompts_seen if eval_set[0]["instruction"] in p)
    shown_first = annotations[0]["output_2"] if alpaca_eval.is_switched(eval_set[0]["instruction"]) else eval_set[0]["output"]
    assert first.index(shown_first) < first.index('"model_identifier": "M"')
    assert first.startswith("I require a leaderboard for various large language models.")


def toy_ctx(tmp_path, n: int) -> EvalContext:
    return EvalContext(model_dir=tmp_path, out_dir=tmp_path, limit=n, judge=get_judge("verifier", progress=False))


def test_toy_question_set_gives_meaningful_win_rates(tmp_path):
    ctx = toy_ctx(tmp_path, 60)
    eval_set = alpaca_eval.load_eval_set(ctx)
    baseline_right = sum(r["output"] == solve(r["instruction"]) for r in eval_set)
    assert 0 < baseline_right < len(eval_set) and all(r["generator"] == toy_questions.BASELINE for r in eval_set)

    def win_rate(answers):
        outputs = [{"instruction": r["instruction"], "output": a, "generator": "m"} for r, a in zip(eval_set, answers)]
        return alpaca_eval.score(ctx, alpaca_eval.annotate(eval_set, outputs, ctx.judge))

    gold = win_rate([solve(r["instruction"]) for r in eval_set])  # ties where the baseline is right, wins elsewhere
    assert gold["win_rate"] == pytest.approx(100 * (0.5 * baseline_right + (60 - baseline_right)) / 60)
    wrong = win_rate(["?"] * 60)  # losses where the baseline is right, ties elsewhere
    assert wrong["win_rate"] == pytest.approx(100 * 0.5 * (60 - baseline_right) / 60)
    assert gold["n_failures"] == wrong["n_failures"] == 0 and gold["lc_note"]


def test_failed_judgments_are_counted_not_losses(tmp_path):
    ctx = toy_ctx(tmp_path, 10)
    eval_set = alpaca_eval.load_eval_set(ctx)
    eval_set[3] = {**eval_set[3], "instruction": "Tell me a story."}  # the verifier cannot judge it
    outputs = [{"instruction": r["instruction"], "output": solve(r["instruction"]) or "x", "generator": "m"}
               for r in eval_set]
    annotations = alpaca_eval.annotate(eval_set, outputs, ctx.judge)
    assert annotations[3]["preference"] is None and "cannot score" in annotations[3]["failure"]
    rows = alpaca_eval.metric_rows(alpaca_eval.score(ctx, annotations), annotations, outputs)
    win = next(r for r in rows if r["metric"] == "win_rate")
    assert win["n"] == 9 and win["failures"] == 1
