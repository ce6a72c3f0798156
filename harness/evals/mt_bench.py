"""MT-Bench: 80 two-turn questions, single-answer grading with FastChat's judge prompts.

Turn 1 is graded with `single-v1`, turn 2 with `single-v1-multi-turn`; math, reasoning and
coding questions use the `single-math-v1` variants with GPT-4's reference answers, as FastChat's
gen_judgment.py does. Ratings are read from `[[rating]]`; an unparseable one is written as
FastChat writes it (score -1), counted as a failure and left out of the means, never made a zero.
Files, under MODEL_DIR/eval/mt-bench/ in FastChat's layout: `question.jsonl`,
`reference_answer/<model>.jsonl`, `model_answer/<model>.jsonl`, `model_judgment/<judge>_single.jsonl`,
and `scores.json`.
"""
from __future__ import annotations

import statistics
import time

from harness.evals import judged, toy_questions
from harness.evals.answer_cache import generate_answers
from harness.evals.registry import EvalContext, benchmark, metric
from harness.judges.base import RatingItem
from harness.judges.prompts import fastchat_prompts
from harness.judges.protocols import RATING

BENCHMARK = "mt-bench"
NEED_REF_CATS = ("math", "reasoning", "coding")  # FastChat common.py
REFERENCE_MODEL = "gpt-4"
FAILED_SCORE = -1  # FastChat's score for an unparseable rating


@benchmark(BENCHMARK)
def mt_bench_benchmark(ctx: EvalContext) -> list[dict]:
    judge = judged.require_judge(ctx, BENCHMARK)
    questions, references, reference_model = load_questions(ctx)
    name = judged.model_name(ctx)
    answers = generate_two_turns(ctx, questions)
    bench = ctx.out_dir / BENCHMARK
    judged.write_jsonl(bench / "question.jsonl", questions)
    judged.write_jsonl(bench / "reference_answer" / f"{reference_model}.jsonl", list(references.values()))
    judged.write_jsonl(bench / "model_answer" / f"{name}.jsonl",
                       [{"question_id": q["question_id"], "answer_id": judged.short_hash(f"{name}\n{q['question_id']}\n{a}"),
                         "model_id": name, "choices": [{"index": 0, "turns": list(a)}], "tstamp": time.time()}
                        for q, a in zip(questions, answers)])
    rows = judge_turns(ctx, questions, answers, references, name, judge)
    judged.write_jsonl(bench / "model_judgment" / f"{judge.name.replace('/', '_')}_single.jsonl", rows)
    from harness.evals.scorers.mt_bench import score_judgments

    scores = score_judgments(rows)
    judged.write_json(bench / "scores.json", scores)
    return metric_rows(scores["models"][name], rows)


def load_questions(ctx) -> tuple[list[dict], dict[int, dict], str]:
    """(FastChat questions, reference answers by question_id, reference model), at most ctx.limit questions."""
    if judged.toy_questions(ctx):
        questions, references = toy_questions.mt_bench_questions(ctx.limit or 80)
        return questions, references, toy_questions.REFERENCE_MODEL
    question_file = judged.data_file(ctx, "mt_bench", "question.jsonl")
    reference_file = judged.data_file(ctx, "mt_bench", "reference_answer", f"{REFERENCE_MODEL}.jsonl")
    if question_file is None or reference_file is None:
        raise judged.missing_data("MT-Bench questions and reference answers", ctx, "mt_bench")
    questions = judged.read_jsonl(question_file)[:ctx.limit or None]
    wanted = {q["question_id"] for q in questions}
    references = {r["question_id"]: r for r in judged.read_jsonl(reference_file) if r["question_id"] in wanted}
    return questions, references, REFERENCE_MODEL


def generate_two_turns(ctx, questions: list[dict]) -> list[tuple[str, str]]:
    """Turn 1 for all questions, then turn 2 with turn 1's answer in the conversation."""
    settings = judged.answer_settings(ctx)
    first = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    answers_1 = generate_answers(ctx, first, settings, desc=f"generate {BENCHMARK} turn 1")
    second = [conv + [{"role": "assistant", "content": a}, {"role": "user", "content": q["turns"][1]}]
              for conv, a, q in zip(first, answers_1, questions)]
    answers_2 = generate_answers(ctx, second, settings, desc=f"generate {BENCHMARK} turn 2")
    return list(zip(answers_1, answers_2))


def judge_turns(ctx, questions, answers, references, model: str, judge) -> list[dict]:
    prompts = fastchat_prompts(ctx.data_dir)
    items, meta = [], []
    for q, (a1, a2) in zip(questions, answers):
        ref = references.get(q["question_id"]) if q.get("category") in NEED_REF_CATS else None
        refs = {}
        if ref is not None:
            ref_turns = ref["choices"][0]["turns"]
            refs = {"ref_answer_1": ref_turns[0], "ref_answer_2": ref_turns[1]}
        turn_prompts = (
            ("single-math-v1" if ref else "single-v1",
             dict(question=q["turns"][0], answer=a1, **refs), q["turns"][0], a1),
            ("single-math-v1-multi-turn" if ref else "single-v1-multi-turn",
             dict(question_1=q["turns"][0], question_2=q["turns"][1], answer_1=a1, answer_2=a2, **refs),
             q["turns"][1], a2),
        )
        for turn, (prompt_name, fields, question, answer) in enumerate(turn_prompts, start=1):
            template = prompts[prompt_name]
            user = template["prompt_template"].format(**fields)
            messages = [{"role": "system", "content": template["system_prompt"]}, {"role": "user", "content": user}]
            items.append(RatingItem(question, answer, messages, RATING))
            meta.append((q["question_id"], turn, prompt_name, user))
    judgments = judge.rate(items, desc=f"judge {BENCHMARK}")
    rows = []
    for (qid, turn, prompt_name, user), j in zip(meta, judgments):
        row = {"question_id": qid, "model": model, "judge": [judge.name, prompt_name], "user_prompt": user,
               "judgment": j.raw, "score": FAILED_SCORE if j.verdict is None else j.verdict, "turn": turn,
               "tstamp": time.time()}
        if j.failure:
            row["failure"] = j.failure
        rows.append(row)
    return rows


def metric_rows(entry: dict, rows: list[dict]) -> list[dict]:
    def stderr(turns):
        ratings = [r["score"] for r in rows if r["turn"] in turns and r["score"] != FAILED_SCORE]
        return statistics.stdev(ratings) / len(ratings) ** 0.5 if len(ratings) > 1 else None

    def failures(turns):
        return sum(r["turn"] in turns and r["score"] == FAILED_SCORE for r in rows)

    def rated(turns):
        return sum(r["turn"] in turns and r["score"] != FAILED_SCORE for r in rows)

    return [metric(BENCHMARK, "score", entry["overall"], stderr((1, 2)), rated((1, 2)), failures((1, 2))),
            metric(BENCHMARK, "score_turn_1", entry["turn_1"], stderr((1,)), rated((1,)), failures((1,))),
            metric(BENCHMARK, "score_turn_2", entry["turn_2"], stderr((2,)), rated((2,)), failures((2,)))]
