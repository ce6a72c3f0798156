"""AlpacaEval 2: the 805 instructions against gpt4_1106_preview, judged with the weighted AlpacaEval prompt.

The judge prompt is alpaca_eval's own (`weighted_alpaca_eval_gpt4_turbo`, read from the installed
package), filled by alpaca_eval's `make_prompts`; the two outputs are shown in alpaca_eval's seeded
random order. The preference comes from the logprobs of the "m"/"M" tokens; a judge that returns no
logprobs is read from its text verdict, and the share of such verdicts is a metric. Identical
outputs are a draw without a judge call, as in alpaca_eval. Files, under MODEL_DIR/eval/alpaca-eval/:
`model_outputs.json`, `reference_outputs.json` (the baseline), `<annotator>/annotations.json` and
`scores.json`, so the official `alpaca_eval` CLI can recheck them.
"""
from __future__ import annotations

import json

from harness.evals import judged, toy_questions
from harness.evals.answer_cache import generate_answers
from harness.evals.registry import EvalContext, benchmark, metric
from harness.judges.base import PairwiseItem
from harness.judges.prompts import ALPACA_EVAL_ANNOTATOR, alpaca_eval_template, import_alpaca_eval
from harness.judges.protocols import PREFERENCE

BENCHMARK = "alpaca-eval"
BASELINE = "gpt4_1106_preview"
SWITCH_SEED = "is_switched_outputs"  # alpaca_eval's switch column name, part of its per-row seed
ANNOTATOR_SEED = 0  # alpaca_eval's PairwiseAnnotator default


@benchmark(BENCHMARK)
def alpaca_eval_benchmark(ctx: EvalContext) -> list[dict]:
    judge = judged.require_judge(ctx, BENCHMARK)
    eval_set = load_eval_set(ctx)
    name = judged.model_name(ctx)
    answers = generate_answers(ctx, [[{"role": "user", "content": r["instruction"]}] for r in eval_set],
                               judged.answer_settings(ctx), desc=f"generate {BENCHMARK}")
    outputs = [{"instruction": r["instruction"], "output": a, "generator": name, "dataset": r.get("dataset")}
               for r, a in zip(eval_set, answers)]
    out = ctx.out_dir / BENCHMARK
    judged.write_json(out / "model_outputs.json", outputs)
    judged.write_json(out / "reference_outputs.json", eval_set)
    annotations = annotate(eval_set, outputs, judge)
    judged.write_json(out / annotator_name(judge) / "annotations.json", annotations)
    scores = score(ctx, annotations)
    judged.write_json(out / "scores.json", scores)
    return metric_rows(scores, annotations, outputs)


def load_eval_set(ctx) -> list[dict]:
    """Rows {instruction, output (the baseline's), generator, dataset}, at most ctx.limit."""
    if judged.toy_questions(ctx):
        rows = [{"instruction": r["prompt"], "output": toy_questions.baseline_answer(r["prompt"]),
                 "generator": toy_questions.BASELINE, "dataset": r["task"]}
                for r in toy_questions.prompts(BENCHMARK, ctx.limit or 805)]
        return rows
    path = judged.data_file(ctx, "alpaca_eval", "results", BASELINE, "model_outputs.json")
    if path is not None:
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:  # alpaca_eval's own loader (the hub dataset)
        try:
            rows = [dict(r) for r in import_alpaca_eval().constants.ALPACAEVAL_REFERENCE_OUTPUTS_2()]
        except Exception:  # offline, no hub cache
            raise judged.missing_data("AlpacaEval 2 eval set", ctx, "alpaca_eval", "results", BASELINE,
                                      "model_outputs.json") from None
    return rows[:ctx.limit] if ctx.limit else rows


def annotator_name(judge) -> str:
    """alpaca_eval's annotator name for the default GPT-4 Turbo judge, else one naming the judge."""
    return ALPACA_EVAL_ANNOTATOR if judge.name == "gpt-4-1106-preview" else f"weighted_alpaca_eval_{judge.name}"


def is_switched(instruction: str) -> bool:
    """alpaca_eval's RandomSwitchTwoColumnsProcessor choice for a row (seeded by its instruction)."""
    utils = import_alpaca_eval().utils
    return utils.random_seeded_choice(seed=SWITCH_SEED + instruction + str(ANNOTATOR_SEED), choices=[False, True])


def annotate(eval_set: list[dict], outputs: list[dict], judge) -> list[dict]:
    """alpaca_eval-format annotations: output_1 = baseline, output_2 = model, preference in [1, 2] or None."""
    import pandas as pd

    utils = import_alpaca_eval().utils
    rows = [{"instruction": b["instruction"], "output_1": b["output"], "generator_1": b["generator"],
             "dataset": b.get("dataset"), "output_2": m["output"], "generator_2": m["generator"],
             "annotator": annotator_name(judge), "price_per_example": None, "time_per_example": None}
            for b, m in zip(eval_set, outputs)]
    switched = [is_switched(r["instruction"]) for r in rows]
    shown = pd.DataFrame([{"instruction": r["instruction"],
                           "output_1": r["output_2"] if s else r["output_1"],
                           "output_2": r["output_1"] if s else r["output_2"]} for r, s in zip(rows, switched)])
    prompts, _ = utils.make_prompts(shown, alpaca_eval_template())
    to_judge = [i for i, r in enumerate(rows) if r["output_1"] != r["output_2"]]
    items = [PairwiseItem(rows[i]["instruction"], shown.output_1[i], shown.output_2[i],
                          utils.prompt_to_chatml(prompts[i]), PREFERENCE) for i in to_judge]
    judgments = dict(zip(to_judge, judge.pairwise(items, desc=f"judge {BENCHMARK}")))
    for i, row in enumerate(rows):
        j = judgments.get(i)
        if j is None:  # identical outputs: a draw, as alpaca_eval decides without asking
            row.update(preference=1.5, raw_completion=None, verdict_source="identical outputs", failure=None)
            continue
        preference = None if j.verdict is None else (3.0 - j.verdict if switched[i] else j.verdict)
        row.update(preference=preference, raw_completion=j.completion or j.raw or None,
                   verdict_source=j.note, failure=j.failure)
    return rows


def score(ctx, annotations: list[dict]) -> dict:
    """The scorer's figures. The LC win rate needs AlpacaEval's instructions (toy ones have no
    difficulty estimate): without them its keys are None and `lc_note` says why."""
    from harness.evals.scorers.alpaca_eval import score_annotations

    return score_annotations(annotations, lc_data_path=judged.data_file(ctx, "alpaca_eval", "lc"),
                             eval_set_path=judged.data_file(ctx, "alpaca_eval", "results", BASELINE,
                                                            "model_outputs.json"))


def metric_rows(scores: dict, annotations: list[dict], outputs: list[dict]) -> list[dict]:
    n, failures = scores["n_total"], scores["n_failures"]
    rows = [metric(BENCHMARK, "win_rate", scores["win_rate"], scores["standard_error"], n, failures),
            metric(BENCHMARK, "discrete_win_rate", scores["discrete_win_rate"], None, n, failures)]
    if scores.get("length_controlled_winrate") is not None:
        rows.append(metric(BENCHMARK, "length_controlled_winrate", scores["length_controlled_winrate"],
                           scores["lc_standard_error"], n, failures))
    judged_rows = [a for a in annotations if a["verdict_source"] in ("logprobs", "text")]
    text_share = sum(a["verdict_source"] == "text" for a in judged_rows) / len(judged_rows) if judged_rows else None
    rows.append(metric(BENCHMARK, "text_verdict_share", text_share, None, len(judged_rows), failures))
    rows.append(metric(BENCHMARK, "avg_length", sum(len(o["output"]) for o in outputs) / max(1, len(outputs)),
                       None, len(outputs), 0))
    return rows
