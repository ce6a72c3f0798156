"""`harness eval`: generate, judge, score; official layouts and metrics.json; caches; judge faults; secrets."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from judge_server import JudgeServer, toy_verdicts

from harness.cli import main
from harness.config.eval import JudgeConfig
from harness.evals import alpaca_eval, answer_cache
from harness.evals.suite import run_suite

JUDGED = "alpaca-eval,arena-hard,mt-bench"
ROW_KEYS = {"benchmark", "metric", "value", "stderr", "n", "failures"}


@pytest.fixture
def stage_dir(toy_model_dir, tmp_path) -> Path:
    """A stage directory holding a copy of the toy model in model/ (eval/ goes next to it)."""
    shutil.copytree(toy_model_dir, tmp_path / "stage" / "model")
    return tmp_path / "stage"


def http_judge(server: JudgeServer, **overrides) -> JudgeConfig:
    settings = dict(base_url=server.base_url, api_key_env=None, name="http-judge", backoff_s=0.01, retries=1,
                    timeout_s=1.0, parse_retries=0, concurrency=4)
    return JudgeConfig(**{**settings, **overrides})


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args, "--threads", "1", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_cli_eval_writes_official_layouts_and_metrics(stage_dir, shared_data):
    out = cli(str(stage_dir), "--suite", f"toy,{JUDGED},openllm", "--judge", "verifier", "--limit", "4",
              "--data-dir", str(shared_data), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])["metrics"]
    assert rows == json.loads((stage_dir / "eval" / "metrics.json").read_text())
    assert all(set(r) == ROW_KEYS for r in rows)
    assert {r["benchmark"] for r in rows} == {"toy", "alpaca-eval", "arena-hard", "mt-bench", "openllm"}
    ev = stage_dir / "eval"
    assert (ev / "DONE").exists() and json.loads((ev / "manifest.json").read_text())["kind"] == "eval"
    for path in ["alpaca-eval/model_outputs.json", "alpaca-eval/weighted_alpaca_eval_verifier/annotations.json",
                 "arena-hard/question.jsonl", "arena-hard/model_answer/stage.jsonl",
                 "arena-hard/model_answer/toy_reference.jsonl", "arena-hard/model_judgment/verifier/stage.jsonl",
                 "mt-bench/question.jsonl", "mt-bench/model_answer/stage.jsonl",
                 "mt-bench/model_judgment/verifier_single.jsonl", "mt-bench/reference_answer/toy_gold.jsonl"]:
        assert (ev / path).is_file(), path
    outputs = json.loads((ev / "alpaca-eval/model_outputs.json").read_text())
    assert len(outputs) == 4 and set(outputs[0]) == {"instruction", "output", "generator", "dataset"}
    judgment = json.loads((ev / "arena-hard/model_judgment/verifier/stage.jsonl").read_text().splitlines()[0])
    assert len(judgment["games"]) == 2 and set(judgment["games"][0]) >= {"user_prompt", "judgment", "score"}
    mt_rows = (ev / "mt-bench/model_judgment/verifier_single.jsonl").read_text().splitlines()
    assert len(mt_rows) == 8 and {json.loads(r)["turn"] for r in mt_rows} == {1, 2}


def test_rerun_neither_regenerates_nor_rejudges(stage_dir, monkeypatch):
    torch.set_num_threads(1)
    with JudgeServer(responder=toy_verdicts) as server:
        first = run_suite(stage_dir, JUDGED, judge=http_judge(server), limit=5, toy_questions=True, progress=False)
        calls = len(server.requests)
        assert calls == 5 + 10 + 10  # AlpacaEval 1 per prompt, Arena-Hard 2 games, MT-Bench 2 turns

        def no_generation(*args, **kwargs):
            raise AssertionError("an answer was generated again")

        monkeypatch.setattr(answer_cache, "_generate", no_generation)
        again = run_suite(stage_dir, JUDGED, judge=http_judge(server), limit=5, toy_questions=True, progress=False)
    assert len(server.requests) == calls
    assert [r["value"] for r in again] == [r["value"] for r in first]
    assert all(r["failures"] == 0 for r in first)


def test_real_question_sets_through_an_http_judge(stage_dir, shared_data):
    torch.set_num_threads(1)
    with JudgeServer() as server:
        rows = run_suite(stage_dir, JUDGED, judge=http_judge(server), limit=2, data_dir=shared_data,
                         generation={"max_new_tokens": 8}, progress=False)
    assert len(server.requests) == 2 + 4 + 4
    values = {(r["benchmark"], r["metric"]): r for r in rows}
    instructions = [r["instruction"] for r in json.loads((stage_dir / "eval/alpaca-eval/model_outputs.json").read_text())]
    # the judge always gives the second output shown P = 0.8; alpaca_eval's seeded order decides which one that is
    expected = sum(20.0 if alpaca_eval.is_switched(i) else 80.0 for i in instructions) / 2
    assert values[("alpaca-eval", "win_rate")]["value"] == pytest.approx(expected)
    assert values[("mt-bench", "score")]["value"] == 7.0 and values[("arena-hard", "score")]["n"] == 2
    ev = stage_dir / "eval"
    baseline = (ev / "arena-hard/model_answer/gpt-4-0314.jsonl").read_text().splitlines()
    assert len(baseline) == 2 and json.loads(baseline[0])["model"] == "gpt-4-0314"
    annotations = json.loads((ev / "alpaca-eval/weighted_alpaca_eval_http-judge/annotations.json").read_text())
    assert annotations[0]["generator_1"] == "gpt4_1106_preview" and annotations[0]["raw_completion"]["logprobs"]
    assert (ev / "mt-bench/reference_answer/gpt-4.jsonl").exists()


def test_judge_faults_are_counted_and_a_resume_pays_only_for_them(stage_dir):
    torch.set_num_threads(1)
    state = {"faults": True}
    kinds = ["500", "garbage", "hang", "babble", "empty"]

    def script(n, body):
        return kinds[n % len(kinds)] if state["faults"] and n % 3 == 0 else "ok"

    with JudgeServer(responder=toy_verdicts, script=script, hang_s=1.5) as server:
        judge = http_judge(server, timeout_s=0.5, concurrency=2)
        faulty = run_suite(stage_dir, JUDGED, judge=judge, limit=6, toy_questions=True, progress=False)
        failures = sum(r["failures"] for r in faulty if r["metric"] in ("win_rate", "score"))
        assert failures > 0
        assert all(r["value"] is not None for r in faulty if r["metric"] in ("win_rate", "score"))
        before = len(server.requests)
        state["faults"] = False
        resumed = run_suite(stage_dir, JUDGED, judge=judge, limit=6, toy_questions=True, progress=False)
    assert len(server.requests) - before == failures
    assert all(r["failures"] == 0 for r in resumed)


def test_api_key_is_sent_but_never_written(stage_dir, tmp_path):
    key = "sk-PLANTED-test-key-0123456789"
    judge_yaml = tmp_path / "judge.yaml"
    with JudgeServer(responder=toy_verdicts, require_key=key) as server:
        judge_yaml.write_text(f"type: openai\nname: keyed\nbase_url: {server.base_url}\napi_key_env: HARNESS_TEST_JUDGE_KEY\n"
                              "backoff_s: 0.01\n")
        out = cli(str(stage_dir / "model"), "--suite", JUDGED, "--judge", str(judge_yaml), "--toy-questions",
                  "--limit", "3", "--out", str(tmp_path / "eval-stage"),
                  env={"HARNESS_TEST_JUDGE_KEY": key, "HARNESS_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "eval-stage" / "DONE").exists() and (tmp_path / "eval-stage" / "metrics.json").exists()
    assert server.auth_headers and set(server.auth_headers) == {f"Bearer {key}"}
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "metrics.json" for p in written) and any(p.suffix == ".sqlite" for p in written)
    assert [p for p in written if key.encode() in p.read_bytes()] == []
    assert key not in out.stdout + out.stderr


def test_input_errors_are_one_line(stage_dir, capsys, tmp_path):
    assert main(["eval", str(stage_dir), "--suite", "toy,nope"]) == 2
    assert main(["eval", str(tmp_path / "missing"), "--suite", "toy"]) == 2
    assert main(["eval", str(stage_dir), "--suite", "mt-bench", "--judge", "oracle"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("harness: error: ") for e in errors)
    assert "unknown benchmark nope" in errors[0] and "neither a judge name" in errors[2]
