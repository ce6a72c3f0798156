"""Axis importance through Optuna's evaluators: on the ingested store, on a search study of real toy-lab
DPO trainings, and the notes it gives when a study cannot support it."""
import math

import optuna
import pandas as pd
import pytest

from harness.report.effects import Results
from harness.report.importance import axis_importance, distribution, results_from_study

EVALUATORS = {"fANOVA", "PED-ANOVA (Optuna default)"}


def test_importance_on_the_ingested_lion_study_names_its_evaluators(ingested_tree):
    from harness.report.effects_report import load_results
    from harness.store.query import open_readonly

    with open_readonly(results_dir=ingested_tree.results) as con:
        results = load_results(con, "lion_toy")
    frame = axis_importance(results, [("toy", "accuracy")])
    assert set(frame["evaluator"]) == EVALUATORS and (frame["n_trials"] == 16).all()  # failed/running trials left out
    for _, rows in frame.groupby("evaluator"):
        assert rows["importance"].sum() == pytest.approx(1.0)
    fanova = frame[frame["evaluator"] == "fANOVA"].set_index("axis")["importance"]
    # planted: loss mask +0.25 >> beta 0.10 >> packing 0.05 > seed 0.01
    assert list(fanova.index) == ["sft.loss_mask", "dpo.beta", "sft.packing", "seed"]
    assert frame.loc[frame["axis"] == "seed", "note"].eq("noise reference").all()


def test_numeric_axes_with_many_values_are_float_ranges_log_when_wide():
    wide = distribution(pd.Series([10 ** (-k / 3) for k in range(12)]))
    assert isinstance(wide, optuna.distributions.FloatDistribution) and wide.log
    few = distribution(pd.Series([0.1, 0.5, 0.1, 0.5]))
    assert isinstance(few, optuna.distributions.CategoricalDistribution) and set(few.choices) == {0.1, 0.5}
    conditional = distribution(pd.Series(["random", "n/a", "stratified"]))
    assert isinstance(conditional, optuna.distributions.CategoricalDistribution)


@pytest.mark.parametrize("values, axes, note", [
    ([0.1, 0.2], {"dpo.beta": [0.1, 0.5]}, "only 2 completed trials (importance needs 3)"),
    ([0.3, 0.3, 0.3, 0.3], {"dpo.beta": [0.1, 0.5, 1.0, 2.0]}, "the metric has one value across trials"),
    ([0.1, 0.2, 0.3], {"dpo.beta": [0.1, 0.1, 0.1]}, "no axis has two levels"),
])
def test_studies_that_cannot_support_importance_get_a_note(values, axes, note):
    (axis, levels), = axes.items()
    trials = pd.DataFrame([{"trial_id": f"t/{i}", "status": "complete", axis: lvl} for i, lvl in enumerate(levels)])
    scores = pd.DataFrame([{"trial_id": f"t/{i}", "benchmark": "toy", "metric": "accuracy", "value": v, "stderr": 0.01}
                           for i, v in enumerate(values)])
    frame = axis_importance(Results("t", trials, scores, axes=[axis]))
    assert len(frame) == 1 and frame["note"].iloc[0] == note and math.isnan(frame["importance"].iloc[0])


@pytest.mark.slow
def test_importance_runs_on_a_real_search_study():
    """A 6-trial TPE search over DPO β and lr on the toy lab (real trainings; harness bench search's objective)."""
    from harness.bench.search import run_search, sft_start

    study = run_search("tpe", seed=0, n_trials=6, start=sft_start(), startup=4)  # the TPE test's first 6: cached
    results = results_from_study(study)
    assert results.axes == ["dpo.beta", "dpo.lr"] and len(results.trials) == 6
    frame = axis_importance(results)
    assert set(frame["evaluator"]) == EVALUATORS and set(frame["axis"]) == {"dpo.beta", "dpo.lr"}
    assert frame["importance"].notna().all() and (frame["n_trials"] == 6).all()


def test_importance_does_not_log_its_scratch_study_and_restores_optuna_verbosity():
    """`harness effects` stderr carried Optuna's INFO line "A new study created in memory" per metric."""
    import logging

    trials = pd.DataFrame([{"trial_id": f"t/{i}", "status": "complete", "dpo.beta": b, "seed": i // 2}
                           for i, b in enumerate([0.1, 0.5, 0.1, 0.5])])
    scores = pd.DataFrame([{"trial_id": f"t/{i}", "benchmark": "toy", "metric": "accuracy", "value": v, "stderr": 0.01}
                           for i, v in enumerate([0.2, 0.4, 0.3, 0.5])])
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = optuna.logging.get_logger("optuna")
    logger.addHandler(handler)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        frame = axis_importance(Results("t", trials, scores, axes=["dpo.beta", "seed"]))
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(before)
    assert set(frame["evaluator"]) == EVALUATORS  # the scratch study was made and used
    assert not [m for m in seen if "A new study created" in m], seen
