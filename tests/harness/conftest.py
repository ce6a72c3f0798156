"""A real small results tree for the store and report tests: Optuna journals whose trials carry the
runner's user_attrs contract, and stage directories (manifest, metrics.json, curves.parquet, DONE)
written with the runner's own stagedir functions. Scores have planted effects, so a table or a plot
that mixes rows up shows it:

- `lion_toy`: sft.packing × sft.loss_mask × dpo.beta × seed (16 complete trials) + a failed
  trial (its dpo stage has files but no DONE) + a running trial (its eval dir has a metrics.json but
  no DONE). Final toy accuracy = 0.30 + 0.25·[assistant mask] + 0.05·[isolated packing] + 0.10·[β 0.1]
  + 0.01·seed; the SFT eval scores 0.1 lower.
- `toy_scaling`: sft.data.0.size × online_dpo.online_samples (8 trials, seed 0), score rising with log size.
- `toy_sdpo`: method (dpo | sdpo) × seed, H4 metrics and sDPO's γ_ref per step.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import pytest

GIT_SHA = "0123456789abcdef0123456789abcdef01234567"
H4 = ("arc_challenge/acc_norm", "hellaswag/acc_norm", "mmlu/acc", "truthfulqa_mc2/acc")


@dataclass
class ResultsTree:
    results: Path
    studies: dict[str, int] = field(default_factory=dict)  # study -> number of trials
    undone_keys: list[str] = field(default_factory=list)  # stage keys whose dirs lack DONE
    done_stage_dirs: set[str] = field(default_factory=set)


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_stage(tree: ResultsTree, kind: str, key: str, *, metrics=None, curves=None, steps=100, done=True,
                config=None) -> Path:
    from harness.runner import stagedir

    out = tree.results / "stages" / f"{kind}-{key}"
    if stagedir.is_done(out):
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(json.dumps(config or {"kind": kind}))
    if curves is not None:
        (out / "curves.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curves))
        stagedir.write_curves(out)
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics))
    (out / "manifest.json").write_text(json.dumps({
        "kind": kind, "config": config or {"kind": kind}, "config_hash": key, "data_fingerprint": f"data-{key}",
        "versions": {"python": "3.11", "duckdb": "2.0.1"}, "git_sha": GIT_SHA, "seconds": 1.5,
        "steps": steps, "tokens_seen": steps * 1000, "final_loss": 0.5}))
    if done:  # plain writes, not the runner's fsync'ed ones: this tree is rebuilt per test
        (out / "DONE").write_text("")
        tree.done_stage_dirs.add(str(out))
    else:
        tree.undone_keys.append(key)
    return out


def metric_rows(scores: dict[str, float], n: int = 300) -> list[dict]:
    rows = []
    for name, value in scores.items():
        benchmark, metric = name.split("/", 1)
        rows.append({"benchmark": benchmark, "metric": metric, "value": value,
                     "stderr": math.sqrt(max(value * (1 - value), 1e-4) / n) if value <= 1 else 0.1,
                     "n": n, "failures": 0})
    return rows


def sft_curves(steps: int, final: float) -> list[dict]:
    return [{"step": s, "name": "loss", "value": final + 2.0 * math.exp(-s / 30)} for s in range(10, steps + 1, 10)]


def dpo_curves(beta: float, steps: int = 60, skill: float = 0.5) -> list[dict]:
    rows = []
    for s in range(5, steps + 1, 5):
        margin = math.log1p(s / 10) * (2 if beta < 0.3 else 1) * (0.5 + skill)
        rows += [{"step": s, "name": "loss", "value": 0.69 * math.exp(-s * skill / 20)},
                 {"step": s, "name": "rewards/margins", "value": beta * margin},
                 {"step": s, "name": "margin/prob", "value": 1 / (1 + math.exp(-margin)) - 0.5},
                 {"step": s, "name": "margin/logp_change", "value": margin}]
    return rows


def stage_entry(kind: str, key: str, path: Path, name: str | None = None, status: str = "complete") -> dict:
    return {"kind": kind, "stage_key": key, "path": str(path), "seconds": 1.5 if status == "complete" else None,
            "status": status, "name": name or kind}


def open_study(results: Path, name: str):
    import optuna

    path = results / name / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.create_study(study_name=name, storage=storage, direction="maximize")


def tell(study, point: int, axes: dict, stages: list[dict], value: float | None, state: str = "complete",
         error: str | None = None) -> None:
    """One trial as the runner leaves it: the point as an enqueued Optuna param, the rest as user attrs."""
    from optuna.trial import TrialState

    study.enqueue_trial({"point": point})
    trial = study.ask()
    trial.suggest_categorical("point", list(range(64)))
    if state == "duplicate":  # the runner's bookkeeping for a point another trial had taken
        trial.set_user_attr("duplicate", True)
        study.tell(trial, state=TrialState.PRUNED)
        return
    attrs = {"axes": axes, "stages": stages, "started_at": "2025-01-02T03:04:05+00:00"}
    if state != "running":
        attrs["finished_at"] = "2025-01-02T03:14:05+00:00"
    if error:
        attrs["error"] = error
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    if state == "complete":
        study.tell(trial, value)
    elif state == "failed":
        study.tell(trial, state=TrialState.FAIL)


def lion_score(packing: str, mask: str, beta: float, seed: int) -> float:
    return 0.30 + 0.25 * (mask == "assistant") + 0.05 * (packing == "isolated") + 0.10 * (beta == 0.1) + 0.01 * seed


def lion_metrics(acc: float) -> dict[str, float]:
    return {"toy/accuracy": acc, "toy/accuracy_add": acc - 0.1, "toy/accuracy_reverse": min(acc + 0.1, 1.0),
            "alpaca-eval/length_controlled_winrate": 100 * acc / 2, "arena-hard/score": 100 * acc / 3,
            "mt-bench/score": 10 * acc, **{f"openllm/{m}": 0.25 + acc / 10 for m in H4}}


def build_lion(tree: ResultsTree) -> None:
    study = open_study(tree.results, "lion_toy")
    grid = list(product(["none", "isolated"], ["all", "assistant"], [0.1, 0.5], [0, 1]))
    for point, (packing, mask, beta, seed) in enumerate(grid):
        acc = lion_score(packing, mask, beta, seed)
        sft_key, dpo_key = key_of("sft", packing, mask, seed), key_of("dpo", packing, mask, beta, seed)
        sft = write_stage(tree, "sft", sft_key, curves=sft_curves(100, 1.2 - acc), steps=100)
        sft_eval = write_stage(tree, "eval", key_of("eval", sft_key), metrics=metric_rows(lion_metrics(acc - 0.1)))
        dpo = write_stage(tree, "dpo", dpo_key, curves=dpo_curves(beta, skill=acc), steps=60)
        dpo_eval = write_stage(tree, "eval", key_of("eval", dpo_key), metrics=metric_rows(lion_metrics(acc)))
        stages = [stage_entry("sft", sft_key, sft), stage_entry("eval", key_of("eval", sft_key), sft_eval, "eval:sft"),
                  stage_entry("dpo", dpo_key, dpo, "preference"),
                  stage_entry("eval", key_of("eval", dpo_key), dpo_eval, "eval:final")]
        axes = {"sft.packing": packing, "sft.loss_mask": mask, "dpo.beta": beta, "seed": seed}
        tell(study, point, axes, stages, acc)
    # a failed trial: shared SFT done, its DPO died after writing files but before DONE
    sft_key = key_of("sft", "none", "all", 0)
    bad_key = key_of("dpo", "none", "all", 1.0, 0)
    bad = write_stage(tree, "dpo", bad_key, curves=dpo_curves(1.0), done=False)
    stages = [stage_entry("sft", sft_key, tree.results / "stages" / f"sft-{sft_key}"),
              stage_entry("dpo", bad_key, bad, "preference", status="failed"),
              stage_entry("eval", key_of("eval", bad_key), tree.results / "stages" / "never", "eval:final", "pending")]
    tell(study, len(grid), {"sft.packing": "none", "sft.loss_mask": "all", "dpo.beta": 1.0, "seed": 0}, stages,
         None, state="failed", error="NonFiniteLossError: non-finite loss nan at step 7")
    # a running trial: its eval wrote metrics.json but not DONE yet
    run_key = key_of("eval", "running")
    running = write_stage(tree, "eval", run_key, metrics=metric_rows({"toy/accuracy": 0.99}), done=False)
    tell(study, len(grid) + 1, {"sft.packing": "isolated", "sft.loss_mask": "all", "dpo.beta": 2.0, "seed": 0},
         [stage_entry("sft", key_of("sft", "isolated", "all", 0), tree.results / "stages" /
                      f"sft-{key_of('sft', 'isolated', 'all', 0)}"),
          stage_entry("eval", run_key, running, "eval:final", "running")], None, state="running")
    tell(study, 0, {}, [], None, state="duplicate")
    tree.studies["lion_toy"] = len(grid) + 2


def build_scaling(tree: ResultsTree) -> None:
    study = open_study(tree.results, "toy_scaling")
    grid = list(product([500, 1000, 2000, 4000], [200, 800]))
    for point, (size, samples) in enumerate(grid):
        acc = 0.2 + 0.1 * math.log2(size / 500) + 0.05 * (samples == 800)
        sft_key, online_key = key_of("sft", size), key_of("online", size, samples)
        sft = write_stage(tree, "sft", sft_key, curves=sft_curves(size // 10, 1 - acc), steps=size // 10)
        online = write_stage(tree, "online_dpo", online_key, steps=40, curves=dpo_curves(0.1, 40) + [
            {"step": r, "name": "online/mean_score", "value": acc + 0.05 * r} for r in (1, 2)])
        ev = write_stage(tree, "eval", key_of("eval", online_key), metrics=metric_rows(lion_metrics(acc)))
        stages = [stage_entry("sft", sft_key, sft), stage_entry("online_dpo", online_key, online),
                  stage_entry("eval", key_of("eval", online_key), ev, "eval:final")]
        tell(study, point, {"sft.data.0.size": size, "online_dpo.online_samples": samples, "seed": 0}, stages, acc)
    tree.studies["toy_scaling"] = len(grid)


def build_sdpo(tree: ResultsTree) -> None:
    study = open_study(tree.results, "toy_sdpo")
    sft_key = key_of("sdpo-sft")
    sft = write_stage(tree, "sft", sft_key, curves=sft_curves(50, 0.4), steps=50)
    for point, (method, seed) in enumerate(product(["dpo", "sdpo"], [0, 1])):
        key = key_of(method, seed)
        curves = dpo_curves(0.1, 30)
        if method == "sdpo":
            curves += [{"step": t, "name": "sdpo/gamma_ref_mean", "value": -0.5 + 0.4 * t + 0.05 * seed} for t in (1, 2, 3)]
        pref = write_stage(tree, method, key, curves=curves, steps=30)
        h4 = {f"openllm/{m}": 0.40 + 0.02 * i + 0.03 * (method == "sdpo") + 0.005 * seed for i, m in enumerate(H4)}
        ev = write_stage(tree, "eval", key_of("eval", key), metrics=metric_rows(h4))
        stages = [stage_entry("sft", sft_key, sft), stage_entry(method, key, pref, "preference"),
                  stage_entry("eval", key_of("eval", key), ev, "eval:final")]
        tell(study, point, {"method": method, "seed": seed}, stages, h4["openllm/mmlu/acc"])
    tree.studies["toy_sdpo"] = 4


def build_results_tree(root: Path) -> ResultsTree:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tree = ResultsTree(results=root / "results")
    build_lion(tree)
    build_scaling(tree)
    build_sdpo(tree)
    return tree


@pytest.fixture
def results_kit():
    """This module, for tests that write their own trials (importing a conftest by name is fragile)."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def _lion_template(tmp_path_factory) -> ResultsTree:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tree = ResultsTree(results=tmp_path_factory.mktemp("lion") / "results")
    build_lion(tree)
    return tree


@pytest.fixture
def lion_tree(_lion_template, tmp_path) -> ResultsTree:
    """A fresh copy of a tree with only the lion_toy study, not ingested, for tests that write the DB.
    (Its journal still points at the template's stage directories, which tests only read.)"""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(_lion_template.results, results)
    return ResultsTree(results, dict(_lion_template.studies), list(_lion_template.undone_keys),
                       set(_lion_template.done_stage_dirs))


@pytest.fixture(scope="session")
def ingested_tree(tmp_path_factory) -> ResultsTree:
    """One results tree with every study ingested into results/harness.duckdb; read it, don't write it."""
    from harness.store.ingest import ingest_all

    tree = build_results_tree(tmp_path_factory.mktemp("ingested"))
    ingest_all(tree.results)
    return tree


@pytest.fixture
def compile_latex(tmp_path):
    """`compile_latex(body, packages)` -> the PDF of an article holding `body`; skips without pdflatex."""
    import shutil
    import subprocess

    def compile_body(body: str, packages=("booktabs",)) -> Path:
        if shutil.which("pdflatex") is None:
            pytest.skip("pdflatex not installed")
        doc = tmp_path / "doc.tex"
        uses = "".join(f"\\usepackage{{{p}}}\n" for p in packages)
        doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n" + uses + "\\begin{document}\n" + body
                       + "\\end{document}\n")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]
        return tmp_path / "doc.pdf"

    return compile_body
