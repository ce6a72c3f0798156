"""MT-Bench pipeline: FastChat's single-answer prompts, reference answers, failures kept apart."""
from __future__ import annotations

from judge_server import JudgeServer

from harness.config.eval import JudgeConfig
from harness.evals import mt_bench
from harness.evals.registry import EvalContext
from harness.evals.scorers.mt_bench import score_judgments
from harness.judges import get_judge


def real_ctx(shared_data, tmp_path, judge=None, limit=None) -> EvalContext:
    return EvalContext(model_dir=tmp_path, out_dir=tmp_path, data_dir=shared_data, limit=limit, judge=judge,
                       options={"toy_questions": False})


def test_prompt_choice_follows_fastchat(shared_data, tmp_path):
    ctx = real_ctx(shared_data, tmp_path)
    questions, references, _ = mt_bench.load_questions(ctx)
    assert len(questions) == 80 and len(references) == 30
    math_q = next(q for q in questions if q["category"] == "math")
    writing_q = next(q for q in questions if q["category"] == "writing")
    with JudgeServer() as server:
        judge = get_judge(JudgeConfig(base_url=server.base_url, api_key_env=None, name="j", cache=False),
                          progress=False)
        rows = mt_bench.judge_turns(ctx, [math_q, writing_q], [("A1", "A2"), ("B1", "B2")], references, "m", judge)
    assert [(r["question_id"], r["turn"], r["judge"][1]) for r in rows] == [
        (math_q["question_id"], 1, "single-math-v1"), (math_q["question_id"], 2, "single-math-v1-multi-turn"),
        (writing_q["question_id"], 1, "single-v1"), (writing_q["question_id"], 2, "single-v1-multi-turn")]
    reference = references[math_q["question_id"]]["choices"][0]["turns"]
    assert reference[0] in rows[0]["user_prompt"] and reference[1] in rows[1]["user_prompt"]
    assert "### Assistant A:\nB1" in rows[3]["user_prompt"] and "### Assistant A:\nB2" in rows[3]["user_prompt"]
    assert all(r["score"] == 7.0 and "[[7]]" in r["judgment"] for r in rows)
    single_v1 = next(b for b in server.requests if b["messages"][-1]["content"] == rows[2]["user_prompt"])
    assert single_v1["messages"][0]["content"] == "You are a helpful assistant."  # single-v1's system prompt


def test_unparseable_ratings_are_failures_not_zeros(shared_data, tmp_path):
    ctx = real_ctx(shared_data, tmp_path, limit=4)
    questions, references, _ = mt_bench.load_questions(ctx)
    answers = [("yes", "no")] * 4

    def script(n, body):
        return "babble" if "### Assistant A:\nno" in body["messages"][-1]["content"] else "ok"  # every turn 2

    with JudgeServer(script=script) as server:
        judge = get_judge(JudgeConfig(base_url=server.base_url, api_key_env=None, cache=False, parse_retries=0),
                          progress=False)
        rows = mt_bench.judge_turns(ctx, questions, answers, references, "m", judge)
    assert [r["score"] for r in rows if r["turn"] == 2] == [-1] * 4
    metrics = {r["metric"]: r for r in mt_bench.metric_rows(score_judgments(rows)["models"]["m"], rows)}
    assert metrics["score"]["value"] == 7.0 and metrics["score"]["n"] == 4 and metrics["score"]["failures"] == 4
    assert metrics["score_turn_2"]["value"] is None and metrics["score_turn_2"]["failures"] == 4


def test_toy_questions_have_two_turns_and_gold_references(tmp_path):
    ctx = EvalContext(model_dir=tmp_path, out_dir=tmp_path, limit=10, judge=get_judge("verifier", progress=False))
    questions, references, reference_model = mt_bench.load_questions(ctx)
    assert reference_model == "toy_gold" and all(len(q["turns"]) == 2 for q in questions)
    gold = [tuple(references[q["question_id"]]["choices"][0]["turns"]) for q in questions]
    rows = mt_bench.judge_turns(ctx, questions, gold, references, "gold", ctx.judge)
    assert {r["score"] for r in rows} == {10.0}
    wrong = mt_bench.judge_turns(ctx, questions, [("?", "?")] * 10, references, "wrong", ctx.judge)
    assert {r["score"] for r in wrong} == {1.0}
    assert {r["judge"][1] for r in rows if r["turn"] == 1} >= {"single-v1", "single-math-v1"}
