"""Online DPO: pair building, prompt budget and mixing (pure), then real rounds on the toy lab:
one round with the verifier judge improves the SFT model, and a round survives a judge that fails
on some prompts (a real HTTP server on 127.0.0.1 answering 500s, garbage and hangs)."""
from __future__ import annotations

import json

import pytest

from trainers.online_dpo import (best_vs_worst, judge_samples, offline_mix, prompts_per_round, round_prompts)


def test_best_vs_worst_pairs_and_skips():
    prompts = ["p1", "p2", "p3", "p4", "p5"]
    responses = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"], ["j", "k", "l"], ["m", "n", "o"]]
    scores = [[0.0, 1.0, 0.25], [None, None, None], [1.0, 1.0, 1.0], [None, 0.0, 1.0], [0.5, None, None]]
    report = best_vs_worst(prompts, responses, scores)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in report.pairs] == [("p1", "b", "a"), ("p4", "l", "k")]
    assert all(p["source"] == "online" for p in report.pairs)
    assert [(s["prompt"], s["reason"]) for s in report.skipped] == [
        ("p2", "no_usable_scores"), ("p3", "tie"), ("p5", "no_usable_scores")]
    assert report.count("tie") == 1 and report.count("no_usable_scores") == 2


def test_judge_samples_shapes_and_failures():
    calls = []

    def score_fn(prompts, responses):
        calls.append((prompts, responses))
        return [len(r) if r != "bad" else float("nan") for r in responses]

    scores = judge_samples(score_fn, ["p", "q"], [["x", "yy"], ["bad", "zzz"]])
    assert calls == [(["p", "p", "q", "q"], ["x", "yy", "bad", "zzz"])]
    assert scores == [[1, 2], [None, 3]]

    def broken(prompts, responses):
        raise ConnectionError("judge down")

    assert judge_samples(broken, ["p"], [["x", "y"]]) == [[None, None]]
    assert judge_samples(lambda p, r: [1.0], ["p"], [["x", "y"]]) == [[None, None]]  # wrong count


def test_prompt_budget_from_online_samples():
    assert prompts_per_round(1280, rounds=2, n=5) == 128
    assert prompts_per_round(1300, rounds=2, n=5) == 130
    with pytest.raises(ValueError, match="fewer than"):
        prompts_per_round(9, rounds=2, n=5)


def test_round_prompts_fresh_until_pool_runs_out_and_seeded():
    pool = [f"p{i}" for i in range(10)]
    r1, r2, r3 = (round_prompts(pool, 4, r, seed=0) for r in (1, 2, 3))
    assert len(set(r1 + r2)) == 8  # rounds 1-2 see distinct prompts
    assert len(r3) == 4 and len(set(r3)) >= 3  # round 3 wraps into a reshuffled second pass
    assert set(r1 + r2 + r3[:2]) == set(pool)
    assert r1 == round_prompts(pool, 4, 1, seed=0) and r1 != round_prompts(pool, 4, 1, seed=1)


def test_offline_mix_ratio():
    pool = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "source": "prefs"} for i in range(100)]
    assert offline_mix(30, pool, 0.0, seed=0) == []
    mixed = offline_mix(30, pool, 0.5, seed=0)
    assert len(mixed) == 30 and {p["source"] for p in mixed} == {"offline:prefs"}
    assert len(offline_mix(30, pool, 0.25, seed=0)) == 10
    assert len(offline_mix(30, pool[:4], 0.75, seed=0)) == 90  # pool reused when it runs out


# ---------------------------------------------------------------- real rounds on the toy lab

def _cfg(sft_model_dir, **changes):
    from harness.config.preference import OnlineDPOConfig

    base = dict(model={"path": str(sft_model_dir)}, data=["toy:prefs"], prompts_per_round=128, n=4, temperature=0.8,
                max_new_tokens=24, beta=0.1, rpo_alpha=1.0, lr=1e-4, batch_size=16, micro_batch_size=16, max_steps=30,
                max_length=128, log_every=10, threads=1, warmup_ratio=0.1, sampler="hf")
    return OnlineDPOConfig(**{**base, **changes})


def _run(sft_model_dir, out, score_fn, pool=None, offline=(), **changes):
    from transformers import AutoTokenizer

    from harness.config.schema import ModelSpec
    from harness.data.models import load_model, weights_hash
    from harness.toylab.datasets import build_toy
    from trainers.online_dpo import train_online_dpo

    pool = pool or [r["prompt"] for r in build_toy("prefs", 2000, 0)]
    return train_online_dpo(sft_model_dir, AutoTokenizer.from_pretrained(sft_model_dir), pool,
                            _cfg(sft_model_dir, **changes), out, score_fn=score_fn, weights_hash=weights_hash,
                            load_model=lambda p: load_model(ModelSpec(path=str(p)))[0], offline_pairs=offline)


def verifier_scores(prompts, responses):
    from harness.judges import get_judge

    return get_judge("verifier", progress=False).score(prompts, responses)


def _margin(model_dir, pairs) -> float:
    """Mean log π(chosen) − log π(rejected) over `pairs`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.sdpo import sequence_logps

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    chosen, rejected, _ = sequence_logps(model, AutoTokenizer.from_pretrained(model_dir), pairs, 128)
    return sum(c - r for c, r in zip(chosen, rejected)) / len(chosen)


def _jsonl(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_verifier_round_raises_the_chosen_over_rejected_margin(sft_model_dir, tmp_path):
    from harness.data.models import weights_hash
    from harness.toylab.tasks import verify

    result = _run(sft_model_dir, tmp_path / "run", verifier_scores)
    (record,) = result.rounds
    pairs = _jsonl(tmp_path / "run" / "round_1" / "pairs.jsonl")
    assert record["samples"] == 128 * 4 and record["judge_failures"] == 0
    assert record["pairs_online"] == len(pairs) >= 10
    assert record["pairs_online"] + record["skipped"] == 128 and record["skipped"] == record["skipped_ties"]
    assert all(verify(p["prompt"], p["chosen"]).score > verify(p["prompt"], p["rejected"]).score for p in pairs)
    assert record["reference_key"] == weights_hash(sft_model_dir) and record["dpo"]["steps"] == 30
    before, after = _margin(sft_model_dir, pairs), _margin(tmp_path / "run" / "model", pairs)
    assert after > before + 0.3, (before, after)


def test_rounds_with_previous_reference_offline_mix_and_resume(sft_model_dir, tmp_path):
    from harness.data.models import weights_hash
    from harness.toylab.datasets import build_toy

    offline = build_toy("prefs", 200, 3)
    kwargs = dict(rounds=2, prompts_per_round=None, online_samples=2 * 32 * 4, max_steps=5, reference="previous",
                  offline_ratio=0.5, offline=offline)
    result = _run(sft_model_dir, tmp_path / "run", verifier_scores, **kwargs)
    r1, r2 = result.rounds
    assert r1["prompts"] == r2["prompts"] == 32
    assert r1["reference_key"] == weights_hash(sft_model_dir)
    assert r2["reference_key"] == r1["model_hash"] and r2["policy"] == str(tmp_path / "run" / "round_1" / "model")
    assert r2["model_hash"] == weights_hash(tmp_path / "run" / "model") != r1["model_hash"]
    for r in (r1, r2):
        assert r["pairs_offline"] == r["pairs_online"] > 0
        sources = [p["source"] for p in _jsonl(tmp_path / "run" / f"round_{r['round']}" / "pairs.jsonl")]
        assert sources.count("online") == r["pairs_online"]
    prompts = [{s["prompt"] for s in _jsonl(tmp_path / "run" / f"round_{i}" / "samples.jsonl")} for i in (1, 2)]
    assert not prompts[0] & prompts[1]  # round 2 samples fresh prompts
    again = _run(sft_model_dir, tmp_path / "run", verifier_scores, **kwargs)
    assert again.resumed_from == str(tmp_path / "run" / "round_2")
    assert [r["model_hash"] for r in again.rounds] == [r1["model_hash"], r2["model_hash"]]


def test_a_round_whose_judge_fails_everywhere_completes_untrained(sft_model_dir, tmp_path):
    from harness.data.models import weights_hash

    def judge_down(prompts, responses):
        raise TimeoutError("judge unreachable")

    result = _run(sft_model_dir, tmp_path / "run", judge_down, prompts_per_round=8)
    (record,) = result.rounds
    assert record["judge_failures"] == 32 and record["skipped_no_usable_scores"] == 8 and record["pairs_online"] == 0
    assert record["dpo"]["steps"] == 0 and record["model_hash"] == weights_hash(sft_model_dir)
    assert len(_jsonl(tmp_path / "run" / "round_1" / "skipped.jsonl")) == 8


# ---------------------------------------------------------------- the command, with a flaky judge

FAILING = {"add": "500", "sort": "garbage", "count": "hang"}  # task of the prompt -> what the server does


def _judged(body) -> tuple[str, str]:
    """(question, answer) out of FastChat's single-answer judge prompt."""
    import re

    text = body["messages"][-1]["content"]
    match = re.search(r"\[Question\]\n(.*?)\n\n\[The Start of Assistant's Answer\]\n(.*?)\n\[The End", text, re.S)
    return match.group(1), match.group(2)


def _rate(body):
    """A judge that knows the toy answers: 10 when correct, else 1-5 by answer length (never all tied)."""
    from harness.toylab.tasks import verify

    question, answer = _judged(body)
    rating = 10 if verify(question, answer).correct else 1 + len(answer) % 5
    return f"Judging.\n\nRating: [[{rating}]]", None


def test_online_round_survives_a_judge_failing_on_some_prompts(sft_model_dir, tmp_path):
    """`harness train online-dpo` against an OpenAI-compatible server on 127.0.0.1 that answers 500s
    for add prompts, garbage for sort prompts and hangs on count prompts: those prompts are skipped
    and recorded, the others become pairs, and the round trains and completes."""
    import subprocess
    import sys

    from judge_server import JudgeServer

    from harness.toylab.tasks import task_of

    def script(n, body):
        return FAILING.get(task_of(_judged(body)[0]), "ok")

    out = tmp_path / "stage"
    with JudgeServer(script=script, responder=_rate, hang_s=1.5) as server:
        judge = (f"{{type: openai, model: test-judge, base_url: '{server.base_url}', api_key_env: null, retries: 1, "
                 "backoff_s: 0.01, timeout_s: 0.4, concurrency: 8, cache: false, max_consecutive_failures: 100000}")
        run = subprocess.run([sys.executable, "-m", "harness.cli", "train", "online-dpo", "ablations/toy/online_dpo.yaml",
                              f"model.path={sft_model_dir}", "rounds=1", "online_samples=160", "n=4", "max_steps=5",
                              "batch_size=8", "micro_batch_size=8", "sampler=hf", f"judge={judge}", "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
        hits = {action: server.count(f"{task}: ") for task, action in FAILING.items()}
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "DONE").exists() and (out / "model" / "config.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    (record,) = manifest["rounds"]
    samples = _jsonl(out / "round_1" / "samples.jsonl")
    failing = [s for s in samples if task_of(s["prompt"]) in FAILING]
    assert record["prompts"] == 40 and len(failing) >= 20  # toy:prefs cycles over the five tasks
    assert all(score is None for s in failing for score in s["scores"])
    assert all(score is not None for s in samples if s not in failing for score in s["scores"])
    skipped = _jsonl(out / "round_1" / "skipped.jsonl")
    assert {s["prompt"] for s in skipped if s["reason"] == "no_usable_scores"} == {s["prompt"] for s in failing}
    assert manifest["judge_failures"] == record["judge_failures"] == 4 * len(failing)
    assert manifest["judge_calls"]["retries"] >= 4 * len(failing)
    assert all(hits.values()), hits  # each failure mode was really served (and retried)
    pairs = _jsonl(out / "round_1" / "pairs.jsonl")
    assert pairs and all(task_of(p["prompt"]) not in FAILING for p in pairs)
    assert record["pairs_online"] == len(pairs) and record["dpo_steps"] == 5
