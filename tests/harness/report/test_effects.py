"""Main effects on synthetic results with planted effects: CIs, the noise rule, pairing under failures,
retries, aliased and nested axes, and costs with shared stages."""
from itertools import product

import numpy as np
import pandas as pd
import pytest

from harness.report.costs import study_cost
from harness.report.effects import Results, level_costs, main_effects, mask_unused_axes, points

MASK, PACKING = "sft.loss_mask", "sft.packing"


def synthetic(score, axes: dict[str, list], seeds=range(8), noise=0.03, se=0.02, fail=()) -> Results:
    """One trial per grid point, value = score(point) + N(0, noise); points in `fail` failed (no metric)."""
    rng = np.random.default_rng(123)
    trials, scores = [], []
    for i, values in enumerate(product(*axes.values(), seeds)):
        point = dict(zip([*axes, "seed"], values))
        tid = f"s/{i}"
        failed = any(all(point[k] == v for k, v in f.items()) for f in fail)
        trials.append({"trial_id": tid, "status": "failed" if failed else "complete", **point})
        if not failed:
            scores.append({"trial_id": tid, "benchmark": "toy", "metric": "accuracy",
                           "value": score(point) + rng.normal(0, noise), "stderr": se})
    return Results("s", pd.DataFrame(trials), pd.DataFrame(scores), axes=[*axes, "seed"],
                   levels={k: list(v) for k, v in axes.items()})


def planted(point):
    return 0.30 + 0.20 * (point[MASK] == "assistant")  # packing: no effect


def row(frame, axis, level=None):
    hit = frame[frame["axis"] == axis]
    return (hit if level is None else hit[hit["level"] == level]).iloc[0]


def test_real_effect_ci_excludes_zero_and_null_covers_zero():
    results = synthetic(planted, {MASK: ["all", "assistant"], PACKING: ["none", "isolated"]})
    effects = main_effects(results)
    real, null = row(effects, MASK), row(effects, PACKING)
    assert real["reference"] == "all" and real["n_pairs"] == 16  # paired on packing × 8 seeds
    assert real["ci_low"] > 0 and abs(real["mean_diff"] - 0.20) < 0.03
    assert real["verdict"] == "effect" and not real["within_noise"]
    assert null["ci_low"] <= 0 <= null["ci_high"] and null["verdict"] == "within noise"
    assert real["paired_on"] == f"{PACKING},seed"
    # noise: the benchmark SE of a difference and the seed spread are both measured
    assert real["bench_se"] == pytest.approx(np.sqrt(2) * 0.02)
    assert 0.015 < real["seed_sd"] < 0.045


def test_reference_level_from_the_grid_file_flips_the_sign():
    results = synthetic(planted, {MASK: ["all", "assistant"], PACKING: ["none", "isolated"]})
    results.reference = {MASK: "assistant"}
    effect = row(main_effects(results), MASK)
    assert effect["reference"] == "assistant" and effect["level"] == "all" and effect["mean_diff"] < -0.15


def test_small_effect_with_tight_ci_is_still_within_benchmark_noise():
    # 0.02 difference measured very precisely (no seed noise) but each eval has SE 0.03: one rerun could produce it
    results = synthetic(lambda p: 0.5 + 0.02 * (p[PACKING] == "isolated"), {PACKING: ["none", "isolated"]},
                        noise=0.0, se=0.03)
    effect = row(main_effects(results), PACKING)
    assert effect["ci_low"] > 0  # the CI alone would call it real
    assert effect["within_noise"] and effect["verdict"] == "within noise"


def test_seed_noise_averages_over_pairs_but_benchmark_noise_does_not():
    """Effect 0.04, seed SD 0.03, 8 seeds, precise evals (SE 0.005): one comparison's seed noise (√2·0.03) would
    hide it, but the mean over 8 pairs has a quarter of that noise: an effect. The same effect measured on a
    benchmark with SE 0.03 stays within noise however many seeds: every pair shares the question set."""
    def score(p):
        return 0.5 + 0.04 * (p[PACKING] == "isolated")

    precise = row(main_effects(synthetic(score, {PACKING: ["none", "isolated"]}, noise=0.03, se=0.005)), PACKING)
    assert precise["n_pairs"] == 8 and precise["ci_low"] > 0 and precise["verdict"] == "effect"
    assert 2 * np.sqrt(2) * precise["seed_sd"] > abs(precise["mean_diff"])  # the one-comparison bar would hide it
    coarse = row(main_effects(synthetic(score, {PACKING: ["none", "isolated"]}, noise=0.03, se=0.03)), PACKING)
    assert coarse["verdict"] == "within noise"


def test_few_pairs_get_a_student_t_interval_not_their_range():
    """Two pairs: a percentile bootstrap gives the range of the two differences; the t interval (df 1) is honest."""
    from harness.report.effects import bootstrap_ci

    low, high = bootstrap_ci(np.array([-0.083, -0.017]), np.random.default_rng(0))
    assert low < -0.3 and high > 0.2  # -0.05 ± 12.7 · 0.047 / √2
    many = np.random.default_rng(1).normal(0.1, 0.05, size=40)
    low, high = bootstrap_ci(many, np.random.default_rng(0))
    assert low < many.mean() < high and high - low < 0.05


def test_failed_trials_are_excluded_and_counted_with_their_partners():
    fail = [{MASK: "assistant", "seed": 1}, {MASK: "all", PACKING: "none", "seed": 2}]
    results = synthetic(planted, {MASK: ["all", "assistant"], PACKING: ["none", "isolated"]}, seeds=range(4), fail=fail)
    effect = row(main_effects(results), MASK)
    # 8 (packing, seed) cells; seed 1 lost both packing cells, (none, seed 2) lost its reference: 5 pairs remain
    assert effect["n_pairs"] == 5
    assert effect["excluded"] == 6 and effect["excluded_failed"] == 3  # 3 failed points + their 3 partners
    packing = row(main_effects(results), PACKING)
    # packing pairs on (mask, seed): the failed (assistant, 1) cell kills 1 pair, (all, none, 2) kills 1
    assert packing["n_pairs"] == 6 and packing["excluded"] == 4 and packing["excluded_failed"] == 3


def test_a_retried_point_counts_once_by_its_completed_try():
    results = synthetic(planted, {MASK: ["all", "assistant"]}, seeds=range(3), fail=[{MASK: "assistant", "seed": 0}])
    retry = {"trial_id": "s/99", "status": "complete", MASK: "assistant", "seed": 0}
    results.trials = pd.concat([results.trials, pd.DataFrame([retry])], ignore_index=True)
    results.scores = pd.concat([results.scores, pd.DataFrame([{"trial_id": "s/99", "benchmark": "toy",
                                                               "metric": "accuracy", "value": 0.5, "stderr": 0.02}])])
    assert len(points(results)) == 6
    effect = row(main_effects(results), MASK)
    assert effect["n_pairs"] == 3 and effect["excluded"] == 0


def test_zipped_axes_are_aliased_and_nested_axes_averaged():
    # method dpo|sdpo with sdpo.split only under sdpo; dpo.lr zipped with dpo.beta
    trials, scores = [], []
    rows = [("dpo", None), ("sdpo", "random"), ("sdpo", "stratified")]
    for i, ((method, split), (beta, lr), seed) in enumerate(product(rows, [(0.1, 1e-4), (0.5, 1e-5)], range(3))):
        trials.append({"trial_id": f"t/{i}", "status": "complete", "method": method, "sdpo.split": split,
                       "dpo.beta": beta, "dpo.lr": lr, "seed": seed})
        scores.append({"trial_id": f"t/{i}", "benchmark": "toy", "metric": "accuracy", "stderr": 0.01,
                       "value": 0.4 + 0.1 * (method == "sdpo") + 0.02 * (split == "stratified") - 0.05 * (beta == 0.5)})
    results = Results("t", pd.DataFrame(trials), pd.DataFrame(scores), axes=["method", "sdpo.split", "dpo.beta", "dpo.lr", "seed"])
    effects = main_effects(results)
    method = row(effects, "method")
    assert method["nested"] == "sdpo.split" and method["n_pairs"] == 6 and method["mean_diff"] == pytest.approx(0.11)
    beta = row(effects, "dpo.beta")
    assert beta["aliased"] == "dpo.lr" and beta["n_pairs"] == 9 and beta["mean_diff"] == pytest.approx(-0.05)
    assert "dpo.lr" not in set(effects["axis"]) and "dpo.lr" not in set(level_costs(results)["axis"])  # beta's trials


def test_report_names_zipped_levels_once_and_how_many_flags_chance_gives():
    """A one-factor-at-a-time zip (packing none with batch 64, as in the demo): batch 64 holds the trials of
    packing none, so it is one comparison, reported under packing with a note; and the report says how many
    of its comparisons a 2-SE rule flags by chance."""
    from harness.report.effects_report import build_report

    base = {PACKING: "isolated", "sft.batch_size": 16, MASK: "assistant"}
    variants = [base, {**base, PACKING: "none", "sft.batch_size": 64}, {**base, MASK: "all"}]
    trials, scores = [], []
    for i, (point, seed) in enumerate(product(variants, range(4))):
        trials.append({"trial_id": f"z/{i}", "status": "complete", **point, "seed": seed})
        scores.append({"trial_id": f"z/{i}", "benchmark": "toy", "metric": "accuracy", "stderr": 0.01,
                       "value": 0.5 - 0.2 * (point[MASK] == "all") + 0.01 * seed})
    results = Results("z", pd.DataFrame(trials), pd.DataFrame(scores), axes=[PACKING, "sft.batch_size", MASK, "seed"],
                      objective="toy.accuracy")
    report = build_report(results, importance=False, n_boot=200)
    assert list(report.effects["axis"]) == [PACKING, MASK]
    assert "sft.batch_size=64: the same trials as sft.packing=none (zipped), reported there" in report.notes
    assert any(n.startswith("1 of 2 comparisons are beyond noise; if no choice mattered, at most about 0.1") for n in report.notes)


def test_axes_of_stages_a_trial_skips_do_not_block_its_pairing():
    """The demo's one-factor-at-a-time zip: online_dpo.online_samples is set on every row, but only the
    online trials run online DPO; for the others the axis is unused, so `online` pairs across it."""
    design = [(False, 256, 0.50), (True, 128, 0.60), (True, 512, 0.70)]
    trials = pd.DataFrame([{"trial_id": f"d/{i}", "status": "complete", "online": on, "online_dpo.online_samples": n,
                            "seed": 0} for i, (on, n, _) in enumerate(design)])
    scores = pd.DataFrame([{"trial_id": f"d/{i}", "benchmark": "toy", "metric": "accuracy", "value": v, "stderr": 0.01}
                           for i, (_, _, v) in enumerate(design)])
    stages = pd.DataFrame([{"trial_id": f"d/{i}", "stage_key": f"{name}{i}", "kind": kind, "name": name, "seconds": 1.0}
                           for i, (on, _, _) in enumerate(design)
                           for name, kind in [("sft", "sft"), ("preference", "dpo")] + [("online_dpo", "online_dpo")] * on
                           + [("eval:final", "eval")]])
    axes = ["online", "online_dpo.online_samples", "seed"]
    masked = mask_unused_axes(trials, stages, axes)
    assert masked["online_dpo.online_samples"].isna().tolist() == [True, False, False]
    effects = main_effects(Results("d", masked, scores, stages, axes=axes))
    online = row(effects, "online")
    assert online["nested"] == "online_dpo.online_samples" and online["n_pairs"] == 1
    assert online["mean_diff"] == pytest.approx(0.15)  # the two online trials averaged against the offline one
    samples = row(effects, "online_dpo.online_samples")
    assert samples["reference"] == 128 and samples["mean_diff"] == pytest.approx(0.10) and samples["n_pairs"] == 1


def test_costs_count_a_shared_stage_once_and_report_what_dedup_saved():
    # 2 trials share one SFT (100 s, recorded 0 s by the trial that reused it); each has its own DPO
    trials = pd.DataFrame([{"trial_id": "a", "status": "complete", "dpo.beta": 0.1, "seed": 0},
                           {"trial_id": "b", "status": "complete", "dpo.beta": 0.5, "seed": 0}])
    stages = pd.DataFrame([{"trial_id": "a", "stage_key": "sft1", "kind": "sft", "seconds": 100.0},
                           {"trial_id": "a", "stage_key": "dpo1", "kind": "dpo", "seconds": 20.0},
                           {"trial_id": "b", "stage_key": "sft1", "kind": "sft", "seconds": 0.0},
                           {"trial_id": "b", "stage_key": "dpo2", "kind": "dpo", "seconds": 30.0}])
    results = Results("c", trials, pd.DataFrame(columns=["trial_id", "benchmark", "metric", "value", "stderr"]),
                      stages, axes=["dpo.beta", "seed"])
    assert study_cost(results) == {"trials": 2, "full": 250.0, "spent": 150.0, "saved": 100.0, "per_trial": 125.0,
                                   "unit": "CPU-s"}
    per_level = level_costs(results).set_index("level")
    assert per_level.loc[0.5, "per_trial"] == 130.0 and per_level.loc[0.5, "saved"] == 0.0
    results.stages["gpus"] = 2
    assert study_cost(results)["unit"] == "GPU-h" and study_cost(results)["saved"] == pytest.approx(200 / 3600)
