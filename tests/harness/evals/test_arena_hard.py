"""Arena-Hard v0.1 pipeline: official prompt, two games with swapped positions, official files."""
from __future__ import annotations

import pytest
from judge_server import JudgeServer, toy_verdicts

from harness.config.eval import JudgeConfig
from harness.evals import arena_hard, judged
from harness.evals.registry import EvalContext
from harness.judges import get_judge
from harness.judges.prompts import arena_hard_v01
from harness.toylab.tasks import solve


def test_real_questions_and_baseline_answers(shared_data, tmp_path):
    ctx = EvalContext(model_dir=tmp_path, out_dir=tmp_path, data_dir=shared_data, limit=5,
                      options={"toy_questions": False})
    questions, baseline, answers = arena_hard.load_questions(ctx)
    assert baseline == "gpt-4-0314" and len(questions) == 5
    assert all(arena_hard.answer_text(answers[q["uid"]]).strip() for q in questions)


def test_official_v01_judge_prompt():
    config = arena_hard_v01()
    assert config["system_prompt"].startswith("Please act as an impartial judge")
    assert "[[A>>B]]" in config["system_prompt"] and config["baseline_model"] == "gpt-4-0314"
    assert "<|User Prompt|>\n{question_1}" in config["prompt_template"][0]


def toy_setup(tmp_path, n: int):
    ctx = EvalContext(model_dir=tmp_path, out_dir=tmp_path, limit=n, options={"toy_questions": True})
    questions, baseline, answers = arena_hard.load_questions(ctx)
    return questions, baseline, [arena_hard.answer_text(answers[q["uid"]]) for q in questions]


def judge_over_http(server, tmp_path):
    return get_judge(JudgeConfig(base_url=server.base_url, api_key_env=None, name="http-judge", backoff_s=0.01,
                                 retries=1, parse_retries=0), cache_dir=tmp_path, progress=False)


def test_two_games_per_question_with_positions_swapped(tmp_path):
    questions, baseline, base_answers = toy_setup(tmp_path, 12)
    gold = [solve(q["prompt"]) for q in questions]
    with JudgeServer(responder=toy_verdicts) as server:
        rows = arena_hard.judge_games(questions, gold, base_answers, "gold-model", baseline,
                                      judge_over_http(server, tmp_path))
        system = server.requests[0]["messages"][0]["content"]
    assert system == arena_hard_v01()["system_prompt"] and len(server.requests) == 24
    for row, base, answer in zip(rows, base_answers, gold):
        game_1, game_2 = row["games"]
        assert game_1["user_prompt"].index(base) < game_1["user_prompt"].index("Assistant B's Answer")
        assert game_2["user_prompt"].index(answer) < game_2["user_prompt"].index("Assistant B's Answer")
        # the baseline is right (a tie) or wrong (the model wins from either seat)
        assert (game_1["score"], game_2["score"]) in {("A=B", "A=B"), ("B>A", "A>B")}
        assert set(row) >= {"uid", "question_id", "model", "judge", "games"} and row["judge"] == "http-judge"


def test_scores_from_the_official_layout_with_failed_games_counted(tmp_path):
    questions, baseline, base_answers = toy_setup(tmp_path, 20)
    gold = [solve(q["prompt"]) for q in questions]

    def script(n, body):  # the judge babbles on the first question's games
        return "babble" if questions[0]["prompt"] in body["messages"][-1]["content"] else "ok"

    with JudgeServer(responder=toy_verdicts, script=script) as server:
        rows = arena_hard.judge_games(questions, gold, base_answers, "gold-model", baseline,
                                      judge_over_http(server, tmp_path))
    bench = tmp_path / "arena-hard"
    judged.write_jsonl(bench / "model_judgment" / "http-judge" / "gold-model.jsonl", rows)
    scores = arena_hard.score(bench, "http-judge", baseline, "gold-model")
    assert rows[0]["games"][0]["score"] is None and rows[0]["games"][0]["judgment"] == "I like turtles."
    score, low, high = (r["value"] for r in arena_hard.metric_rows(scores["models"]["gold-model"], 20, 2))
    assert 50 < low <= score <= high  # never worse than a baseline that is right only half the time
    [row] = [r for r in arena_hard.metric_rows(scores["models"]["gold-model"], 20, 2) if r["metric"] == "score"]
    assert row["failures"] == 2 and row["n"] == 20 and row["stderr"] > 0


def test_every_game_failed_gives_no_score_not_zero(tmp_path):
    scores = arena_hard.score(tmp_path / "empty", "nobody", "toy_reference", "m")
    [row, *_] = arena_hard.metric_rows(scores["models"]["m"], 5, 10)
    assert row["value"] is None and row["failures"] == 10
