"""sDPO: split composition (pure), and a real two-step run on the toy model whose step-t reference
is step t−1's weights (compared by hash)."""
from __future__ import annotations

import json

import pytest

from trainers.sdpo import composition, easy_to_hard_order, equal_parts, split_pairs


def _pairs(counts: dict[str, int]) -> list[dict]:
    return [{"prompt": f"{src} {i}", "chosen": "a", "rejected": "b", "source": src}
            for src, n in counts.items() for i in range(n)]


def _ids(chunk):
    return [p["prompt"] for p in chunk]


COUNTS = {"openorca": 12, "ultrafeedback": 60, "extra": 7}


def test_natural_one_step_per_source_in_given_order():
    pairs = _pairs(COUNTS)
    chunks = split_pairs(pairs, "natural")
    assert [composition(c) for c in chunks] == [{"openorca": 12}, {"ultrafeedback": 60}, {"extra": 7}]
    chunks = split_pairs(pairs, "natural", order=["ultrafeedback", "extra", "openorca"])
    assert [list(composition(c)) for c in chunks] == [["ultrafeedback"], ["extra"], ["openorca"]]
    assert _ids(chunks[0]) == [p["prompt"] for p in pairs if p["source"] == "ultrafeedback"]  # data order kept


@pytest.mark.parametrize("order", [["openorca"], ["openorca", "ultrafeedback", "extra", "nope"],
                                   ["openorca", "openorca", "extra"]])
def test_natural_order_must_name_every_source_once(order):
    with pytest.raises(ValueError, match="exactly once"):
        split_pairs(_pairs(COUNTS), "natural", order=order)


def test_natural_steps_must_match_sources():
    with pytest.raises(ValueError, match="gives 3 steps"):
        split_pairs(_pairs(COUNTS), "natural", steps=2)


def test_random_equal_chunks_partition_everything_and_are_seeded():
    pairs = _pairs(COUNTS)
    chunks = split_pairs(pairs, "random", steps=3, seed=5)
    assert sorted(len(c) for c in chunks) == [26, 26, 27]
    assert sorted(p for c in chunks for p in _ids(c)) == sorted(_ids(pairs))
    assert [_ids(c) for c in chunks] == [_ids(c) for c in split_pairs(pairs, "random", steps=3, seed=5)]
    assert [_ids(c) for c in chunks] != [_ids(c) for c in split_pairs(pairs, "random", steps=3, seed=6)]
    assert _ids(chunks[0]) != _ids(pairs[:len(chunks[0])])  # shuffled, not a prefix of the data


def test_stratified_chunks_have_the_same_mixture():
    pairs = _pairs(COUNTS)
    chunks = split_pairs(pairs, "stratified", steps=4, seed=0)
    sizes = [len(c) for c in chunks]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(pairs)
    assert sorted(p for c in chunks for p in _ids(c)) == sorted(_ids(pairs))
    for source, total in COUNTS.items():
        per_chunk = [composition(c).get(source, 0) for c in chunks]
        assert max(per_chunk) - min(per_chunk) <= 1, (source, per_chunk)
        assert sum(per_chunk) == total


def test_stratified_exact_mixture_when_divisible():
    chunks = split_pairs(_pairs({"a": 20, "b": 40}), "stratified", steps=2, seed=3)
    assert [composition(c) for c in chunks] == [{"a": 10, "b": 20}, {"a": 10, "b": 20}]


def test_random_split_mixture_differs_from_stratified():
    """The random split draws chunks without regard to source, so its mixture varies (seeded)."""
    pairs = _pairs({"a": 50, "b": 50})
    random_mix = [composition(c)["a"] for c in split_pairs(pairs, "random", steps=4, seed=1)]
    strat_mix = [composition(c)["a"] for c in split_pairs(pairs, "stratified", steps=4, seed=1)]
    assert max(strat_mix) - min(strat_mix) <= 1
    assert max(random_mix) - min(random_mix) > 1


def test_explicit_names_and_sizes():
    pairs = _pairs(COUNTS)
    chunks = split_pairs(pairs, "explicit", explicit=[["openorca", "extra"], "ultrafeedback"])
    assert [composition(c) for c in chunks] == [{"openorca": 12, "extra": 7}, {"ultrafeedback": 60}]
    chunks = split_pairs(pairs, "explicit", explicit=[12, 30])
    assert _ids(chunks[0]) == _ids(pairs[:12]) and _ids(chunks[1]) == _ids(pairs[12:42])
    with pytest.raises(ValueError, match="sum to at most"):
        split_pairs(pairs, "explicit", explicit=[70, 30])
    with pytest.raises(ValueError, match="unknown or repeated"):
        split_pairs(pairs, "explicit", explicit=["openorca", "nope"])
    with pytest.raises(ValueError, match="all sizes or all source names"):
        split_pairs(pairs, "explicit", explicit=["openorca", 5])


def test_easy_to_hard_orders_by_reward_accuracy():
    assert easy_to_hard_order({"ultrafeedback": 0.72, "openorca": 0.91, "x": 0.72}) == ["openorca", "ultrafeedback", "x"]
    chunks = split_pairs(_pairs(COUNTS), "easy_to_hard", order=easy_to_hard_order({"openorca": 0.9, "ultrafeedback": 0.7,
                                                                                   "extra": 0.8}))
    assert [list(composition(c)) for c in chunks] == [["openorca"], ["extra"], ["ultrafeedback"]]
    with pytest.raises(ValueError, match="difficulty order"):
        split_pairs(_pairs(COUNTS), "easy_to_hard")


def test_equal_parts_rotates_remainder():
    assert [len(p) for p in equal_parts(list(range(7)), 3)] == [3, 2, 2]
    assert [len(p) for p in equal_parts(list(range(7)), 3, first=2)] == [2, 2, 3]


# ---------------------------------------------------------------- real runs on the toy model

def _toy_pairs() -> list[dict]:
    from harness.toylab.datasets import build_toy

    rows = [{**r, "source": "reverse"} for r in build_toy("prefs_reverse", 48, 0)]
    return rows + [{**r, "source": "add"} for r in build_toy("prefs_add", 48, 0)]


def _cfg(sft_model_dir, **changes):
    from harness.config.preference import SDPOConfig

    base = dict(model={"path": str(sft_model_dir)}, data=["toy:prefs"], split="natural", beta=0.1, rpo_alpha=1.0,
                lr=1e-4, batch_size=16, micro_batch_size=16, max_steps=4, max_length=128, log_every=2, threads=1,
                warmup_ratio=0.0)
    return SDPOConfig(**{**base, **changes})


def _loader():
    from harness.config.schema import ModelSpec
    from harness.data.models import load_model

    return lambda path: load_model(ModelSpec(path=str(path)))[0]


def _run(sft_model_dir, out, cache, **changes):
    from transformers import AutoTokenizer

    from harness.data.models import weights_hash
    from trainers.sdpo import train_sdpo

    tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
    return train_sdpo(sft_model_dir, tokenizer, _toy_pairs(), _cfg(sft_model_dir, **changes), out,
                      weights_hash=weights_hash, load_model=_loader(), ref_cache_dir=cache)


@pytest.fixture(scope="module")
def two_step_run(sft_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sdpo")
    return root, _run(sft_model_dir, root / "run", root / "ref_cache")


def test_step_reference_is_previous_step_weights(two_step_run, sft_model_dir):
    from harness.data.models import weights_hash

    root, result = two_step_run
    step1, step2 = result.per_step
    assert [s["sources"] for s in result.per_step] == [{"reverse": 48}, {"add": 48}]
    assert step1["reference_key"] == weights_hash(sft_model_dir)
    assert step1["model_hash"] == weights_hash(root / "run" / "step_1" / "model")
    assert step2["reference_key"] == step1["model_hash"]
    assert step2["reference"] == str(root / "run" / "step_1" / "model")
    assert len({weights_hash(sft_model_dir), step1["model_hash"], step2["model_hash"]}) == 3  # each step trained
    assert weights_hash(root / "run" / "model") == step2["model_hash"]
    assert result.steps == 8 and all(s["dpo"]["steps"] == 4 for s in result.per_step)  # max_steps per step


def test_gamma_ref_is_measured_with_the_previous_step_model(two_step_run, sft_model_dir):
    """Step 2's γ_ref recomputed independently from step 1's saved weights: the reference really was M_1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.sdpo import sequence_logps

    root, result = two_step_run
    tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
    chunk2 = [p for p in _toy_pairs() if p["source"] == "add"]
    for model_dir, record in ((root / "run" / "step_1" / "model", result.per_step[1]),
                              (sft_model_dir, result.per_step[0])):
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        pairs = chunk2 if record["step"] == 2 else [p for p in _toy_pairs() if p["source"] == "reverse"]
        chosen, rejected, _ = sequence_logps(model, tokenizer, pairs, 128)
        expected = sum(0.1 * (c - r) for c, r in zip(chosen, rejected)) / len(chosen)
        assert record["mean_gamma_ref"] == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_stage_curves_carry_gamma_ref_per_step(two_step_run):
    root, result = two_step_run
    rows = [json.loads(line) for line in (root / "run" / "curves.jsonl").read_text().splitlines()]
    gamma = {r["step"]: r["value"] for r in rows if r["name"] == "sdpo/gamma_ref_mean"}
    assert gamma == pytest.approx({1: result.per_step[0]["mean_gamma_ref"], 2: result.per_step[1]["mean_gamma_ref"]})
    losses = [r["step"] for r in rows if r["name"] == "loss"]
    assert max(losses) == 8  # step 2's loss rows shifted past step 1's 4 optimizer steps
    lr = {r["step"]: r["value"] for r in rows if r["name"] == "learning_rate"}
    assert [lr[2], lr[4]] == [lr[6], lr[8]] and lr[2] > lr[4]  # the schedule restarts each step


def test_finished_steps_are_not_retrained(two_step_run, sft_model_dir):
    root, result = two_step_run
    again = _run(sft_model_dir, root / "run", root / "ref_cache")
    assert again.resumed_from == str(root / "run" / "step_2")
    assert [s["model_hash"] for s in again.per_step] == [s["model_hash"] for s in result.per_step]


def test_reference_cache_keyed_by_previous_step_weights(two_step_run, sft_model_dir):
    """A second run from the same SFT model: step 1 (same SFT reference) and step 2 (same M_1 weights,
    since CPU training is deterministic) hit the cache; with target_init=sft, step 2 starts from the
    SFT weights and ends elsewhere."""
    root, first = two_step_run
    second = _run(sft_model_dir, root / "again", root / "ref_cache", target_init="sft")
    assert [s["dpo"]["ref_cache_hit"] for s in second.per_step] == [True, True]
    assert second.per_step[0]["model_hash"] == first.per_step[0]["model_hash"]
    assert second.per_step[1]["reference_key"] == first.per_step[0]["model_hash"]
    assert second.per_step[1]["target_init"] == str(sft_model_dir)
    assert second.per_step[1]["model_hash"] != first.per_step[1]["model_hash"]


def test_easy_to_hard_puts_the_easier_source_first(sft_model_dir, tmp_path):
    """Source `z_easy`: sorted digits against garbage; `a_hard`: additions against near misses (the SFT
    model adds poorly). Listed hard first, and named so that a tie would also put hard first: both
    difficulty measures must order easy first."""
    from transformers import AutoTokenizer

    from harness.data.models import weights_hash
    from harness.toylab.datasets import build_toy
    from trainers.sdpo import plan_steps

    hard = [{**r, "source": "a_hard"} for r in build_toy("prefs_add", 64, 1) if r["kind"] == "correct_vs_wrong"][:32]
    easy = [{**r, "rejected": "zq zq zq zq zq zq", "source": "z_easy"} for r in build_toy("prefs_sort", 32, 1)]
    tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
    for method in ("logprob", "probe"):
        cfg = _cfg(sft_model_dir, split="easy_to_hard", difficulty=method, probe_steps=3)
        chunks, difficulty = plan_steps(sft_model_dir, tokenizer, hard + easy, cfg, tmp_path / method,
                                        weights_hash=weights_hash, load_model=_loader(), ref_cache_dir=None)
        accuracy = difficulty["reward_accuracy"]
        assert accuracy["z_easy"] > accuracy["a_hard"], difficulty
        assert difficulty["order"] == ["z_easy", "a_hard"]
        assert [composition(c) for c in chunks] == [{"z_easy": len(easy)}, {"a_hard": len(hard)}]


# ---------------------------------------------------------------- the command

def harness(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)


def test_harness_train_sdpo_writes_a_stage_directory(sft_model_dir, tmp_path):
    """The toy config as shipped (easy_to_hard with a probe), shrunk by overrides."""
    import pandas as pd

    out = tmp_path / "stage"
    run = harness("train", "sdpo", "ablations/toy/sdpo.yaml", f"model.path={sft_model_dir}", "data.0.size=32",
                  "data.1.size=48", "max_steps=3", "probe_steps=2", "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "DONE").exists() and (out / "model" / "config.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sdpo" and manifest["steps"] == 6
    steps = manifest["sdpo_steps"]
    assert sorted(manifest["difficulty"]["order"]) == ["lookup", "sort"]
    assert [s["sources"] for s in steps] == [{n: {"sort": 32, "lookup": 48}[n]} for n in manifest["difficulty"]["order"]]
    assert steps[1]["reference_key"] == steps[0]["model_hash"]
    assert len(manifest["mean_gamma_ref"]) == 2
    curves = pd.read_parquet(out / "curves.parquet")
    gamma = curves[curves["name"] == "sdpo/gamma_ref_mean"].sort_values("step")
    assert gamma["step"].tolist() == [1, 2]
    assert gamma["value"].tolist() == pytest.approx(manifest["mean_gamma_ref"])


@pytest.mark.parametrize("override, message", [
    ("explicit=[sort, nope]", "unknown or repeated sources"),
    ("split=random", "needs `steps`"),
    ("reference.path=toy", "sets its references itself"),
])
def test_bad_split_settings_are_one_line_errors(override, message, tmp_path):
    extra = ["split=explicit"] if override.startswith("explicit") else []
    run = harness("train", "sdpo", "ablations/toy/sdpo.yaml", *extra, override, "--out", str(tmp_path / "x"))
    assert run.returncode == 2, run.stderr[-2000:]
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
