"""`harness run` / `harness status`: start workers on a grid's study, ingest as they go, report.

One worker runs in this process; several run as `harness worker` subprocesses (each with its
own GPU when there are several, else a share of the CPU threads). Only this process writes DuckDB.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna

from harness.grid.expand import Plan
from harness.runner.launch import LaunchSettings, die_with_parent
from harness.runner.runner import Layout, load_study, open_storage, point_of, recover, work


def launch_settings(plan: Plan, workers: int, launcher: str | None = None, worker_index: int = 0) -> LaunchSettings:
    execution = plan.grid.execution
    threads = execution.threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    env = {}
    gpus = _gpu_count()
    if gpus > 1 and execution.gpus_per_stage <= 1:
        env["CUDA_VISIBLE_DEVICES"] = str(worker_index % gpus)
    return LaunchSettings(threads=threads, launcher=launcher or execution.launcher, gpus_per_stage=execution.gpus_per_stage,
                          deepspeed_config=execution.deepspeed_config, slurm=execution.slurm.model_dump(), env=env)


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def _ingest(layout: Layout, plan: Plan, storage_url: str | None, echo, quiet: bool = False) -> None:
    try:
        from harness.store.ingest import ingest
    except ImportError:
        return
    from harness.store.schema import StoreError

    try:
        counts = ingest(layout.results, plan.study, storage_url=storage_url)
    except StoreError as err:  # e.g. a long `harness query` holds the file: ingest again later
        echo(f"ingest skipped: {err}")
        return
    if counts.get("ingested") or not quiet:
        echo(f"ingested into {layout.results / 'harness.duckdb'}: {counts}")


def _worker_cmd(grid_file: str, overrides, storage_url: str | None, index: int, rerun) -> list[str]:
    cmd = [sys.executable, "-m", "harness.cli", "worker", grid_file, "--index", str(index)]
    cmd += ["--storage", storage_url] if storage_url else []
    cmd += [f"--rerun={k}" for k in rerun]
    return cmd + list(overrides)


def run_grid(plan: Plan, overrides=(), workers: int | None = None, storage_url: str | None = None, rerun=(),
             launcher: str | None = None, ingest_every: float = 30.0, echo=print) -> dict:
    layout = Layout(Path(plan.grid.results_dir))
    workers = workers or plan.grid.execution.workers
    storage = open_storage(storage_url, layout, plan.study)
    study = load_study(plan, storage)
    recovered = recover(study, plan, plan.grid.execution.retries)
    echo(f"study {plan.study}: {len(plan.points)} points, {len(plan.stages)} distinct stages, {workers} worker(s); {recovered}")
    start = time.time()
    if workers == 1:
        work(plan, layout, storage, launch_settings(plan, 1, launcher), plan.grid.execution.retries, rerun, echo)
    else:
        procs = [subprocess.Popen(_worker_cmd(plan.file, overrides, storage_url, i, rerun), preexec_fn=die_with_parent)
                 for i in range(workers)]
        last = time.time()
        while any(p.poll() is None for p in procs):
            time.sleep(1)
            if time.time() - last > ingest_every:
                _ingest(layout, plan, storage_url, echo, quiet=True)  # as it goes; says so only when trials land
                last = time.time()
    _ingest(layout, plan, storage_url, echo)
    summary = summarize(load_study(plan, storage), plan)
    summary["wall_seconds"] = time.time() - start
    echo(f"done in {summary['wall_seconds']:.0f}s: {summary['states']}")
    return summary


def summarize(study: optuna.Study, plan: Plan) -> dict:
    if plan.grid.search is not None:  # search beyond grids: trials, not grid points
        from harness.grid.search import search_summary
        return search_summary(study, plan)
    states: dict[str, int] = {}
    per_point: dict[int, str] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("duplicate"):
            continue
        p = point_of(t)
        if p is None:
            continue
        name = t.state.name.lower()
        if per_point.get(p) != "complete":
            per_point[p] = name
    for state in per_point.values():
        states[state] = states.get(state, 0) + 1
    stage_seconds = sum(r["seconds"] or 0 for t in study.get_trials(deepcopy=False) for r in t.user_attrs.get("stages", []))
    return {"study": plan.study, "points": len(plan.points), "states": states, "stage_seconds": stage_seconds}


def status_lines(plan: Plan, storage_url: str | None = None) -> list[str]:
    layout = Layout(Path(plan.grid.results_dir))
    if plan.grid.search is not None:  # search beyond grids: one line per sampled trial
        from harness.grid.search import search_status_lines
        return search_status_lines(plan, open_storage(storage_url, layout, plan.study), layout)
    study = load_study(plan, open_storage(storage_url, layout, plan.study))
    by_point = {}
    for t in study.get_trials(deepcopy=False):
        if point_of(t) is not None and not t.user_attrs.get("duplicate"):
            by_point.setdefault(point_of(t), []).append(t)
    lines = []
    for point, chain in zip(plan.points, plan.chains):
        trials = by_point.get(point.index, [])
        state = trials[-1].state.name.lower() if trials else "pending"
        axes = " ".join(f"{k}={v}" for k, v in point.axes.items())
        lines.append(f"point {point.index:>3} {state:<9} tries={len(trials)} {axes}")
        for key in chain:
            node = plan.stages[key]
            done = (layout.stage_dir(node) / "DONE").exists()
            lines.append(f"      {node.name:<16} {'done' if done else 'todo':<5} {layout.stage_dir(node)}")
        error = trials[-1].user_attrs.get("error") if trials else None
        if error and state != "complete":
            lines.append(f"      error: {error}")
    return lines
