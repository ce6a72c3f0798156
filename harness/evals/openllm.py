"""The `openllm` benchmark: Open LLM Leaderboard v1 through lm-eval, at LION's settings.

LION's `run_lm_eval.py` settings: arc_challenge 25-shot acc_norm, hellaswag 10-shot acc_norm,
truthfulqa_mc2 0-shot acc, winogrande 5-shot acc, gsm8k 5-shot exact_match (strict-match filter),
mmlu 5-shot acc (lm-eval's `mmlu` group score). The average is the plain mean of the six scores.

The task logic is lm-eval's own: `HFLM` wraps the loaded model, `simple_evaluate` runs the tasks
without a chat template. Without a data dir, lm-eval's standard tasks run unchanged (data from the
hub). With one (the `openllm/` folder or its parent), each task reads local JSONL files through
generated task YAML that `include`s lm-eval's task YAML and overrides only the dataset and splits:

- Every `<task>/<split>.jsonl` becomes a `data_files` entry (absolute path).
- The evaluated split is lm-eval's (arc_challenge, gsm8k, mmlu: test; the others: validation)
  when its file is there, else the local validation (else test) file.
- Shots come from lm-eval's few-shot split (train; MMLU: dev) when its file is there, else from
  the evaluated file, with lm-eval leaving each doc out of its own shots.
- MMLU runs the subjects present under `mmlu/<subject>/`; `mmlu/acc` is lm-eval's group aggregate
  over them (size-weighted, as lm-eval's `mmlu` group).
So with partial copies (shared/data/openllm has validation rows for ARC, no train splits and 5 MMLU
subjects) ARC scores validation rather than test, arc/hellaswag/winogrande/gsm8k draw shots from
the evaluated rows rather than train, and MMLU covers 5 of 57 subjects. Full local copies
(train/test files, all subjects) give the official settings.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.config.loader import ConfigError
from harness.evals.registry import EvalContext, benchmark, metric

BENCHMARK = "openllm"


@dataclass(frozen=True)
class OpenLLMTask:
    name: str  # lm-eval task (or group) name
    shots: int
    metric: str  # lm-eval metric key, "<metric>,<filter>"
    yaml: str  # lm-eval's task YAML, relative to lm_eval/tasks (MMLU: a per-subject pattern)
    local: str  # folder under the data dir
    eval_split: str  # the split lm-eval evaluates
    fewshot_split: str | None  # the split lm-eval draws shots from

    @property
    def metric_name(self) -> str:
        key, filt = self.metric.split(",")
        return f"{self.name}/{key}" if filt == "none" else f"{self.name}/{self.metric}"


TASKS = (
    OpenLLMTask("arc_challenge", 25, "acc_norm,none", "arc/arc_challenge.yaml", "arc_challenge", "test", "train"),
    OpenLLMTask("hellaswag", 10, "acc_norm,none", "hellaswag/hellaswag.yaml", "hellaswag", "validation", "train"),
    OpenLLMTask("truthfulqa_mc2", 0, "acc,none", "truthfulqa/truthfulqa_mc2.yaml", "truthfulqa_mc", "validation",
                None),
    OpenLLMTask("winogrande", 5, "acc,none", "winogrande/default.yaml", "winogrande", "validation", "train"),
    OpenLLMTask("gsm8k", 5, "exact_match,strict-match", "gsm8k/gsm8k.yaml", "gsm8k", "test", "train"),
    OpenLLMTask("mmlu", 5, "acc,none", "mmlu/default/mmlu_{subject}.yaml", "mmlu", "test", "dev"),
)
TASK_BY_NAME = {t.name: t for t in TASKS}


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


# ---------------------------------------------------------------- offline task YAML

def _split_files(folder: Path) -> dict[str, str]:
    return {p.stem: str(p.resolve()) for p in sorted(folder.glob("*.jsonl"))}


def _local_task_yaml(task: OpenLLMTask, include: Path, files: dict[str, str], where: Path) -> dict:
    """lm-eval's task YAML with only the dataset and its splits pointed at local files."""
    eval_split = next((s for s in (task.eval_split, "validation", "test") if s in files), None)
    if eval_split is None:
        raise ConfigError(f"no {task.eval_split}.jsonl (or validation/test.jsonl) for {task.name}",
                          file=str(where), key="data_dir")
    fewshot = None
    if task.shots:
        fewshot = task.fewshot_split if task.fewshot_split in files else eval_split
    return {
        "include": str(include),
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
        "training_split": "train" if "train" in files else None,
        "validation_split": None,
        # the evaluated split doubles as test_split so lm-eval drops a doc from its own shots
        "test_split": eval_split,
        "fewshot_split": fewshot,
    }


def _mmlu_yamls(root: Path, tasks_dir: Path) -> dict[str, dict]:
    """One YAML per subject present locally, plus the `mmlu` group over them."""
    task = TASK_BY_NAME["mmlu"]
    out, subjects = {}, []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        include = tasks_dir / task.yaml.format(subject=folder.name)
        if not include.exists():
            raise ConfigError(f"unknown MMLU subject {folder.name!r} (no {include.name} in lm-eval)",
                              file=str(folder), key="data_dir")
        name = f"mmlu_{folder.name}"
        out[name] = {**_local_task_yaml(task, include, _split_files(folder), folder), "task": name}
        subjects.append(name)
    if not subjects:
        raise ConfigError("no MMLU subject folders", file=str(root), key="data_dir")
    out["mmlu"] = {"group": "mmlu", "task": subjects,
                   "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
                   "metadata": {"version": 2, "subjects": [s[len("mmlu_"):] for s in subjects]}}
    return out


def write_local_tasks(data_dir: Path, task_dir: Path, names: list[str]) -> Path:
    """Write task YAML for `names` reading from `data_dir` (the `openllm/` folder or its parent)."""
    data_dir = Path(data_dir).resolve()
    root = data_dir / "openllm" if (data_dir / "openllm").is_dir() else data_dir
    tasks_dir = lm_eval_tasks_dir()
    yamls: dict[str, dict] = {}
    for name in names:
        task = TASK_BY_NAME[name]
        folder = root / task.local
        if not folder.is_dir():
            raise ConfigError(f"no local data for {name} (expected folder {task.local}/)", file=str(root),
                              key="data_dir")
        if name == "mmlu":
            yamls.update(_mmlu_yamls(folder, tasks_dir))
        else:
            yamls[name] = {**_local_task_yaml(task, tasks_dir / task.yaml, _split_files(folder), folder),
                           "task": name}
    task_dir.mkdir(parents=True, exist_ok=True)
    for stale in task_dir.glob("*.yaml"):
        stale.unlink()
    for name, cfg in yamls.items():
        (task_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return task_dir


# ---------------------------------------------------------------- running lm-eval

def _load_tasks(names: list[str], task_manager) -> list:
    """lm-eval Task/Group objects with LION's shot counts set on every leaf task."""
    objects = []
    for name in names:
        loaded = task_manager.load([name])
        for task_obj in loaded["tasks"].values():
            task_obj.set_config(key="num_fewshot", value=TASK_BY_NAME[name].shots)
        objects.append(loaded["groups"].get(name) or loaded["tasks"][name])
    return objects


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _n_docs(results: dict, name: str) -> int:
    leaves = results.get("group_subtasks", {}).get(name) or [name]
    return sum(int(results["n-samples"][leaf]["effective"]) for leaf in leaves)


def metric_rows(results: dict, names: list[str]) -> list[dict]:
    """Metric rows for each task's LION metric, plus `average` (the mean of the six, when all six ran)."""
    rows = []
    for name in names:
        task = TASK_BY_NAME[name]
        key, filt = task.metric.split(",")
        scores = results["results"][name]
        rows.append(metric(BENCHMARK, task.metric_name, scores[task.metric],
                           stderr=_number(scores.get(f"{key}_stderr,{filt}")), n=_n_docs(results, name)))
    if len(rows) == len(TASKS):
        rows.append(metric(BENCHMARK, "average", sum(r["value"] for r in rows) / len(rows)))
    return rows


@contextmanager
def _lm_eval_sets_lengths(model):
    """A saved `generation_config.max_new_tokens` would win over the `max_length` (context + 256
    tokens) that lm-eval passes to generate(); lift it for the run, so gsm8k generates as lm-eval sets."""
    config = getattr(model, "generation_config", None)
    saved = getattr(config, "max_new_tokens", None)
    if saved is not None:
        config.max_new_tokens = None
    try:
        yield
    finally:
        if saved is not None:
            config.max_new_tokens = saved


def run_openllm(model, tokenizer, out_dir: Path, limit: int | None = None, data_dir: Path | None = None,
                tasks: list[str] | None = None, batch_size: int = 16, log_samples: bool = False) -> list[dict]:
    """Run the OpenLLM v1 tasks with lm-eval on a loaded model; write `out_dir/openllm/results.json`.

    `data_dir`: local benchmark data (offline); None uses lm-eval's standard tasks (the hub).
    `tasks`: a subset of the six task names (default all); `limit`: docs per task (per MMLU subject).
    `log_samples`: also write lm-eval's per-doc records (prompts, responses) to `samples/<task>.jsonl`.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    from harness.runner.stagedir import atomic_write_text

    names = list(dict.fromkeys(tasks or TASK_BY_NAME))
    unknown = sorted(set(names) - set(TASK_BY_NAME))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; choose from {sorted(TASK_BY_NAME)}", key="tasks")
    out = Path(out_dir) / BENCHMARK
    if data_dir is None:
        task_manager = TaskManager()
    else:
        task_dir = write_local_tasks(Path(data_dir), out / "tasks", names)
        task_manager = TaskManager(include_path=str(task_dir), include_defaults=False)

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    with _lm_eval_sets_lengths(model):
        results = simple_evaluate(model=lm, tasks=_load_tasks(names, task_manager), task_manager=task_manager,
                                  batch_size=batch_size, limit=limit, log_samples=log_samples,
                                  apply_chat_template=False)
    for task_name, records in results.pop("samples", {}).items():
        lines = (json.dumps(r, default=handle_non_serializable) + "\n" for r in records)
        atomic_write_text(out / "samples" / f"{task_name}.jsonl", "".join(lines))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=handle_non_serializable))
    return metric_rows(results, names)


@benchmark(BENCHMARK)
def openllm_benchmark(ctx: EvalContext) -> list[dict]:
    model, tokenizer = ctx.model_and_tokenizer
    return run_openllm(model, tokenizer, ctx.out_dir, limit=ctx.limit, data_dir=ctx.data_dir,
                       tasks=ctx.options.get("tasks"), batch_size=int(ctx.options.get("batch_size", 16)),
                       log_samples=bool(ctx.options.get("log_samples", False)))
