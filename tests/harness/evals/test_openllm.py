"""The OpenLLM v1 benchmark through lm-eval: every task offline on the toy model, from shared/data/openllm/."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from harness.config.loader import ConfigError
from harness.evals.openllm import TASKS, lm_eval_tasks_dir, run_openllm, write_local_tasks
from harness.evals.registry import EvalContext, load_all

LIMIT = 3
SUBJECTS = ["abstract_algebra", "college_physics", "high_school_biology", "marketing", "world_religions"]
# the table: metric row name -> shots
TABLE = {"arc_challenge/acc_norm": 25, "hellaswag/acc_norm": 10, "truthfulqa_mc2/acc": 0, "winogrande/acc": 5,
         "gsm8k/exact_match,strict-match": 5, "mmlu/acc": 5}
OVERRIDDEN = {"include", "task", "dataset_path", "dataset_name", "dataset_kwargs", "training_split",
              "validation_split", "test_split", "fewshot_split"}


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, shared_data, toy_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(toy_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(toy_model_dir)
    assert model.generation_config.max_new_tokens == 32  # the toy model's saved cap
    out = tmp_path_factory.mktemp("openllm")
    rows = run_openllm(model, tokenizer, out, limit=LIMIT, data_dir=shared_data, log_samples=True)
    assert model.generation_config.max_new_tokens == 32  # restored after the run
    results = json.loads((out / "openllm" / "results.json").read_text())
    return rows, results, out / "openllm", tokenizer


def _samples(out, task):
    return [json.loads(line) for line in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]


def test_every_task_reports_lions_metric_with_lm_evals_stderr_and_n(offline_run):
    rows, results, _, _ = offline_run
    by_name = {r["metric"]: r for r in rows}
    assert list(by_name) == [*TABLE, "average"]
    assert all(r["benchmark"] == "openllm" for r in rows)
    for name in TABLE:
        row = by_name[name]
        task, key = name.split("/", 1)
        metric, filt = (key.split(",") + ["none"])[:2]
        assert 0.0 <= row["value"] <= 1.0
        assert row["value"] == results["results"][task][f"{metric},{filt}"]
        assert row["stderr"] == results["results"][task][f"{metric}_stderr,{filt}"]
        assert row["n"] == (LIMIT * len(SUBJECTS) if task == "mmlu" else LIMIT)
    assert by_name["average"]["value"] == pytest.approx(sum(by_name[n]["value"] for n in TABLE) / len(TABLE))


def test_shot_counts_are_the_tables(offline_run):
    _, results, _, _ = offline_run
    expected = {name.split("/")[0]: shots for name, shots in TABLE.items()}
    expected.update({f"mmlu_{s}": 5 for s in SUBJECTS})
    assert results["n-shot"] == expected
    for task, shots in expected.items():
        if task != "mmlu":
            assert results["configs"][task]["num_fewshot"] == shots


def test_prompts_hold_the_shots_and_leave_out_the_evaluated_doc(offline_run):
    _, _, out, _ = offline_run
    # (task, marker, count): a marker starts each shot and the question, or "\n\n" ends each shot
    for task, marker, count in [("arc_challenge", "Question:", 25 + 1), ("gsm8k", "Question:", 5 + 1),
                                ("mmlu_marketing", "\nAnswer:", 5 + 1), ("hellaswag", "\n\n", 10),
                                ("winogrande", "\n\n", 5)]:
        for record in _samples(out, task):
            assert record["arguments"][0][0].count(marker) == count, (task, record["doc_id"])
    for record in _samples(out, "arc_challenge"):  # the evaluated doc is never among its own shots
        assert record["arguments"][0][0].count(f"Question: {record['doc']['question']}\n") == 1
    for record in _samples(out, "truthfulqa_mc2"):  # zero-shot: lm-eval's fixed QA preamble + the question
        assert record["arguments"][0][0].endswith(f"\n\nQ: {record['doc']['question']}\nA:")
        assert record["arguments"][0][0].count("\n\nQ: ") == 6


def test_gsm8k_generates_lm_evals_256_tokens_not_the_models_saved_cap(offline_run):
    _, _, out, tokenizer = offline_run
    # the toy model never writes a stop sequence, so each answer runs to lm-eval's max_gen_toks
    for record in _samples(out, "gsm8k"):
        assert len(tokenizer(record["resps"][0][0])["input_ids"]) == 256


def test_mmlu_shots_are_the_subjects_dev_rows_in_order(offline_run, shared_data):
    _, _, out, _ = offline_run
    dev = [json.loads(line) for line in
           (shared_data / "openllm" / "mmlu" / "marketing" / "dev.jsonl").read_text().splitlines()]
    context = _samples(out, "mmlu_marketing")[0]["arguments"][0][0]
    positions = [context.index(row["question"].strip()) for row in dev]
    assert positions == sorted(positions)


def test_offline_data_comes_from_local_files_by_absolute_path(offline_run, shared_data):
    _, results, out, _ = offline_run
    for task, config in results["configs"].items():
        assert config["dataset_path"] == "json"
        for path in config["dataset_kwargs"]["data_files"].values():
            assert path.startswith("/") and path.startswith(str(shared_data.resolve()))
    assert sorted(p.stem for p in (out / "tasks").glob("*.yaml")) == sorted(
        [t.name for t in TASKS] + [f"mmlu_{s}" for s in SUBJECTS])


def _without_overrides(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in OVERRIDDEN}


def test_generated_yaml_changes_only_dataset_and_splits(tmp_path, shared_data):
    from lm_eval.tasks._yaml_loader import load_yaml

    task_dir = write_local_tasks(shared_data, tmp_path / "tasks", [t.name for t in TASKS])
    for path in sorted(task_dir.glob("*.yaml")):
        ours = load_yaml(path, resolve_func=False)  # with lm-eval's included YAML merged in
        if "group" in ours:
            assert ours["task"] == [f"mmlu_{s}" for s in SUBJECTS]
            assert ours["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": True}]
            continue
        theirs = load_yaml(yaml.safe_load(path.read_text())["include"], resolve_func=False)
        assert _without_overrides(ours) == _without_overrides(theirs), path.name
        assert ours["task"] == theirs["task"]


def test_official_fewshot_split_is_used_when_its_file_is_present(tmp_path, shared_data):
    local = tmp_path / "openllm" / "arc_challenge"
    local.mkdir(parents=True)
    shutil.copy(shared_data / "openllm" / "arc_challenge" / "validation.jsonl", local / "validation.jsonl")
    shutil.copy(shared_data / "openllm" / "arc_challenge" / "validation.jsonl", local / "train.jsonl")
    shutil.copy(shared_data / "openllm" / "arc_challenge" / "validation.jsonl", local / "test.jsonl")
    task_dir = write_local_tasks(tmp_path, tmp_path / "tasks", ["arc_challenge"])
    cfg = yaml.safe_load((task_dir / "arc_challenge.yaml").read_text())
    assert (cfg["test_split"], cfg["fewshot_split"], cfg["training_split"]) == ("test", "train", "train")
    assert cfg["include"] == str(lm_eval_tasks_dir() / "arc" / "arc_challenge.yaml")
    (local / "train.jsonl").unlink()
    (local / "test.jsonl").unlink()
    cfg = yaml.safe_load((write_local_tasks(tmp_path, tmp_path / "tasks", ["arc_challenge"])
                          / "arc_challenge.yaml").read_text())
    assert (cfg["test_split"], cfg["fewshot_split"], cfg["training_split"]) == ("validation", "validation", None)


def test_missing_data_unknown_subject_and_unknown_task_are_one_line_errors(tmp_path, shared_data):
    with pytest.raises(ConfigError, match="no local data for gsm8k"):
        write_local_tasks(tmp_path, tmp_path / "tasks", ["gsm8k"])
    (tmp_path / "mmlu" / "not_a_subject").mkdir(parents=True)
    with pytest.raises(ConfigError, match="unknown MMLU subject 'not_a_subject'"):
        write_local_tasks(tmp_path, tmp_path / "tasks", ["mmlu"])
    with pytest.raises(ConfigError, match="unknown task"):
        run_openllm(None, None, tmp_path, data_dir=shared_data, tasks=["mmlu_pro"])


def test_registered_benchmark_runs_from_an_eval_context(tmp_path, shared_data, toy_model_dir):
    import torch

    torch.set_num_threads(1)
    ctx = EvalContext(model_dir=toy_model_dir, out_dir=tmp_path / "eval", limit=2, data_dir=shared_data,
                      options={"tasks": ["truthfulqa_mc2"], "batch_size": 4})
    rows = load_all()["openllm"](ctx)
    assert [r["metric"] for r in rows] == ["truthfulqa_mc2/acc"]  # no "average" of a subset
    assert rows[0]["n"] == 2 and math.isfinite(rows[0]["value"])
    assert (tmp_path / "eval" / "openllm" / "results.json").exists()
