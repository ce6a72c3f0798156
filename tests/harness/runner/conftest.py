"""Shared by the runner tests: a tiny real grid (SFT 3 steps, DPO 2 steps, batch 8, max_length 96, one
thread), the CLI as a subprocess, the Optuna ledger read back per point, storages (the journal file,
and a real PostgreSQL server when HARNESS_TEST_PG_URL is set, as `.ci/run` does), and a private
HARNESS_CACHE that shares the built toy model but not the reference log-prob cache.

Test modules get these helpers through the `grids` fixture (importing a conftest by name is fragile).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from harness.grid.expand import load_plan
from harness.runner.runner import Layout, open_storage, point_of

FAULTS_DIR = Path(__file__).resolve().parent / "faults"  # sitecustomize.py: fault injection by env
PG_ENV = "HARNESS_TEST_PG_URL"

SFT = ('{data: [{source: "toy:sft_mix", size: 64}], packing: none, max_steps: 3, lr: 1.0e-3, batch_size: 8, '
       'micro_batch_size: 8, max_length: 96, log_every: 1}')
DPO = ('{data: [{source: "toy:prefs", size: 2000}], max_steps: 2, lr: 1.0e-4, batch_size: 8, micro_batch_size: 8, '
       'max_length: 96, log_every: 1}')
EVAL = "{suite: [toy], limit: 4}"

GRID = """study: {study}
results_dir: {results}
method: {method}
execution: {execution}
pipeline:
{pipeline}
grid:
{axes}
"""


def write_grid(tmp_path: Path, axes: str, study: str = "t", stages: dict[str, str] | None = None,
               execution: str = "{retries: 1, threads_per_worker: 1}") -> Path:
    """A grid file `<tmp_path>/<study>.yaml` writing to `<tmp_path>/results`; `stages` maps stage -> flow YAML
    (default: the tiny SFT and DPO); without a DPO stage the method is none."""
    stages = stages if stages is not None else {"sft": SFT, "dpo": DPO}
    pipeline = "\n".join(f"  {name}: {spec}" for name, spec in stages.items())
    path = tmp_path / f"{study}.yaml"
    method = "dpo" if "dpo" in stages else "none"
    path.write_text(GRID.format(study=study, results=tmp_path / "results", method=method, execution=execution,
                                pipeline=pipeline, axes=axes))
    return path


def harness(*args, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def popen(*args, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}, **kw)


def fault_env(*faults: dict) -> dict:
    """Environment that makes the listed faults fire (see faults/sitecustomize.py)."""
    path = os.pathsep.join([str(FAULTS_DIR), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "HARNESS_TEST_FAULTS": json.dumps(list(faults))}


def load_study(grid_path: Path, storage_url: str | None = None) -> optuna.Study:
    plan = load_plan(grid_path)
    storage = open_storage(storage_url, Layout(Path(plan.grid.results_dir)), plan.study)
    return optuna.load_study(study_name=plan.study, storage=storage)


def trials_by_point(grid_path: Path, storage_url: str | None = None) -> tuple:
    """(plan, {point: [trial states in order]}), the runner's bookkeeping trials left out."""
    plan = load_plan(grid_path)
    out: dict[int, list[str]] = {}
    for t in load_study(grid_path, storage_url).get_trials(deepcopy=False):
        if not t.user_attrs.get("duplicate"):
            out.setdefault(point_of(t), []).append(t.state.name)
    return plan, out


def stage_launches(results: Path, kind: str = "sft") -> int:
    """How many times a stage subprocess of `kind` was started (each launch appends its command to the log)."""
    return sum(log.read_text().count(f" train {kind} ") for log in results.glob(f"stages/{kind}-*/log"))



def private_cache(root: Path) -> Path:
    """A HARNESS_CACHE with the already built toy model and tokenizer linked in and nothing else, so the
    reference log-prob cache starts empty."""
    shared = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")
    from harness.toylab.build import toy_base_model_dir

    toy_base_model_dir()  # built once in the shared cache
    root.mkdir(parents=True, exist_ok=True)
    for name in ("toy-base", "toy-tokenizer"):
        if not (root / name).exists():
            (root / name).symlink_to(shared / name)
    return root


@pytest.fixture
def grids():
    """This module: GRID, write_grid, harness, popen, fault_env, trials_by_point, stage_launches, ..."""
    return sys.modules[__name__]


@pytest.fixture
def pg_url():
    """The PostgreSQL server's URL (skips without one); studies the test created are deleted afterwards.
    Tests name their study with `unique_study`, so runs never share one."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (.ci/run starts PostgreSQL and sets it)")
    before = set(optuna.get_all_study_names(url))
    yield url
    for name in set(optuna.get_all_study_names(url)) - before:
        optuna.delete_study(study_name=name, storage=url)


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request):
    """None (the study's journal file) or the PostgreSQL URL."""
    return None if request.param == "journal" else request.getfixturevalue("pg_url")


def unique_study(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def storage_args(url: str | None) -> list[str]:
    return ["--storage", url] if url else []
