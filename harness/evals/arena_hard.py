"""Arena-Hard-Auto v0.1: the 500 questions against gpt-4-0314, judged with the official v0.1 prompt.

Two games per question with positions swapped (game 1: the baseline is Assistant A; game 2: the
model is), verdicts `[[A>>B]]` ... `[[B>>A]]`. Files, under MODEL_DIR/eval/arena-hard/ in the
official layout: `question.jsonl`, `model_answer/<model>.jsonl` and `model_answer/<baseline>.jsonl`,
`model_judgment/<judge>/<model>.jsonl` (rows: `uid` and `question_id`, `category`, `model`, `judge`,
`games`: [{`user_prompt`, `judgment`, `score`}] with `score` the label, or null for a failed game),
and `scores.json`. The score is the model's win rate against the baseline (percent) with a 95%
bootstrap CI, by the Arena-Hard scorer.
"""
from __future__ import annotations

import time

from harness.config.loader import ConfigError
from harness.evals import judged, toy_questions
from harness.evals.answer_cache import generate_answers
from harness.evals.registry import EvalContext, benchmark, metric
from harness.judges.base import PairwiseItem
from harness.judges.prompts import arena_hard_v01
from harness.judges.protocols import VERDICT_LABEL

BENCHMARK = "arena-hard"
DATA = "arena_hard_v0.1"
CATEGORY = "arena-hard-v0.1"
Z95 = 1.959964  # a 95% CI spans about 2 * 1.96 standard errors


@benchmark(BENCHMARK)
def arena_hard_benchmark(ctx: EvalContext) -> list[dict]:
    judge = judged.require_judge(ctx, BENCHMARK)
    questions, baseline, baseline_answers = load_questions(ctx)
    name = judged.model_name(ctx)
    texts = generate_answers(ctx, [[{"role": "user", "content": q["prompt"]}] for q in questions],
                             judged.answer_settings(ctx), desc=f"generate {BENCHMARK}")
    bench = ctx.out_dir / BENCHMARK
    judged.write_jsonl(bench / "question.jsonl", questions)
    judged.write_jsonl(bench / "model_answer" / f"{baseline}.jsonl", [baseline_answers[q["uid"]] for q in questions])
    judged.write_jsonl(bench / "model_answer" / f"{name}.jsonl",
                       [answer_row(q["uid"], name, q["prompt"], t) for q, t in zip(questions, texts)])
    rows = judge_games(questions, texts, [answer_text(baseline_answers[q["uid"]]) for q in questions], name,
                       baseline, judge)
    judge_dir = judge_dir_name(judge)
    judged.write_jsonl(bench / "model_judgment" / judge_dir / f"{name}.jsonl", rows)
    scores = score(bench, judge_dir, baseline, name)
    judged.write_json(bench / "scores.json", scores)
    failed_games = sum(g["score"] is None for r in rows for g in r["games"])
    return metric_rows(scores["models"].get(name) or {}, len(rows), failed_games)


def load_questions(ctx) -> tuple[list[dict], str, dict[str, dict]]:
    """(questions {uid, category, cluster, prompt}, baseline model, baseline answer rows by uid)."""
    if judged.toy_questions(ctx):
        questions = [{"uid": judged.short_hash(r["prompt"]), "category": CATEGORY, "cluster": r["task"],
                      "prompt": r["prompt"]} for r in toy_questions.prompts(BENCHMARK, ctx.limit or 500)]
        answers = {q["uid"]: answer_row(q["uid"], toy_questions.BASELINE, q["prompt"],
                                        toy_questions.baseline_answer(q["prompt"])) for q in questions}
        return questions, toy_questions.BASELINE, answers
    baseline = arena_hard_v01()["baseline_model"]
    question_file = judged.data_file(ctx, DATA, "question.jsonl")
    answer_file = judged.data_file(ctx, DATA, "model_answer", f"{baseline}.jsonl")
    if question_file is None or answer_file is None:
        raise judged.missing_data("Arena-Hard v0.1 questions and baseline answers", ctx, DATA)
    questions = judged.read_jsonl(question_file)[:ctx.limit or None]
    answers = {row.get("uid", row.get("question_id")): row for row in judged.read_jsonl(answer_file)}
    missing = [q["uid"] for q in questions if q["uid"] not in answers]
    if missing:
        raise ConfigError(f"{len(missing)} questions have no baseline answer (first: {missing[0]})", file=str(answer_file))
    return questions, baseline, answers


def answer_row(uid: str, model: str, prompt: str, text: str) -> dict:
    """An answer in the official (2025) model_answer format."""
    return {"uid": uid, "ans_id": judged.short_hash(f"{model}\n{uid}\n{text}"), "model": model,
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": {"answer": text}}],
            "tstamp": time.time()}


def answer_text(row: dict) -> str:
    """The answer text of a model_answer row, in the 2025 (`messages`) or 2024 (`choices`) format."""
    if "messages" in row:
        content = row["messages"][-1]["content"]
        return content["answer"] if isinstance(content, dict) else content
    turn = row["choices"][0]["turns"][0]
    return turn["content"] if isinstance(turn, dict) else turn


def judge_dir_name(judge) -> str:
    return judge.name.replace("/", "_")


def judge_games(questions, answers, baseline_answers, model, baseline, judge) -> list[dict]:
    """Two games per question, as the official gen_judgment.py plays them."""
    config = arena_hard_v01()
    template = config["prompt_template"][0]
    items = []
    for q, answer, base in zip(questions, answers, baseline_answers):
        for a, b in ((base, answer), (answer, base)):
            user = template.format(question_1=q["prompt"], answer_1=a, answer_2=b)
            messages = [{"role": "system", "content": config["system_prompt"]}, {"role": "user", "content": user}]
            items.append(PairwiseItem(q["prompt"], a, b, messages, VERDICT_LABEL))
    judgments = judge.pairwise(items, desc=f"judge {BENCHMARK}")
    rows = []
    for k, q in enumerate(questions):
        games = []
        for item, j in zip(items[2 * k:2 * k + 2], judgments[2 * k:2 * k + 2]):
            game = {"user_prompt": item.messages[1]["content"], "judgment": j.raw, "score": j.verdict}
            if j.failure:
                game["failure"] = j.failure
            games.append(game)
        rows.append({"uid": q["uid"], "question_id": q["uid"], "category": q.get("category", CATEGORY),
                     "model": model, "judge": judge.name, "baseline": baseline, "games": games,
                     "tstamp": time.time()})
    return rows


def score(bench, judge_dir: str, baseline: str, model: str) -> dict:
    from harness.evals.scorers.arena_hard import score_bench_dir

    try:
        return score_bench_dir(bench, judge_dir, baseline=baseline)
    except ConfigError as err:  # every game failed: nothing to score, and the metrics say so
        return {"benchmark": BENCHMARK, "models": {model: {"score": None, "ci_low": None, "ci_high": None}},
                "note": str(err)}


def metric_rows(entry: dict, n_questions: int, failed_games: int) -> list[dict]:
    value, low, high = entry.get("score"), entry.get("ci_low"), entry.get("ci_high")
    stderr = (high - low) / (2 * Z95) if low is not None and high is not None else None
    return [metric(BENCHMARK, "score", value, stderr, n_questions, failed_games),
            metric(BENCHMARK, "ci_low", low, None, n_questions, failed_games),
            metric(BENCHMARK, "ci_high", high, None, n_questions, failed_games)]
