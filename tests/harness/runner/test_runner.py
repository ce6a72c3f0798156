"""The grid runner on real tiny stages: shared stages train once, each point completes exactly once
(3 workers, one journal storage), SIGKILL mid-trial resumes, a failing point fails alone."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from harness.grid.expand import load_plan
from harness.runner.runner import Layout, open_storage, point_of

pytestmark = pytest.mark.slow

GRID = """study: {study}
results_dir: {results}
execution: {{retries: 1, threads_per_worker: 1}}
pipeline:
  sft: {{data: [{{source: "toy:sft_mix", size: 64}}], packing: none, max_steps: 3, lr: 1.0e-3, batch_size: 8,
        micro_batch_size: 8, max_length: 96, log_every: 1}}
  dpo: {{data: [{{source: "toy:prefs", size: 2000}}], max_steps: 2, lr: 1.0e-4, batch_size: 8, micro_batch_size: 8,
        max_length: 96, log_every: 1}}
grid:
{axes}
"""


def write_grid(tmp_path, axes, study="t"):
    path = tmp_path / f"{study}.yaml"
    path.write_text(GRID.format(study=study, results=tmp_path / "results", axes=axes))
    return path


def harness(*args, **kw):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, **kw)


def trials_by_point(grid_path):
    plan = load_plan(grid_path)
    study = optuna.load_study(study_name=plan.study, storage=open_storage(None, Layout(Path(plan.grid.results_dir)), plan.study))
    out = {}
    for t in study.get_trials(deepcopy=False):
        if not t.user_attrs.get("duplicate"):
            out.setdefault(point_of(t), []).append(t.state.name)
    return plan, out


def sft_launches(results: Path) -> int:
    return sum(log.read_text().count(" train sft ") for log in results.glob("stages/sft-*/log"))


def test_workers_share_stages_and_run_each_point_exactly_once(tmp_path):
    grid = write_grid(tmp_path, "  dpo.beta: [0.1, 0.2, 0.5]")
    result = harness("run", str(grid), "--workers", "3", "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    plan, by_point = trials_by_point(grid)
    assert by_point == {0: ["COMPLETE"], 1: ["COMPLETE"], 2: ["COMPLETE"]}
    assert sft_launches(tmp_path / "results") == 1  # shared by the three trials, trained once
    # Two more workers started later find nothing to do and change nothing.
    again = harness("run", str(grid), "--workers", "2")
    assert again.returncode == 0 and trials_by_point(grid)[1] == by_point
    assert sft_launches(tmp_path / "results") == 1


def test_runner_killed_mid_trial_resumes_without_double_counting(tmp_path):
    grid = write_grid(tmp_path, "  dpo.beta: [0.1, 0.5]", study="k")
    runner = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(grid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "results").glob("stages/dpo-*/log")) and time.time() < deadline:
        time.sleep(0.5)
    os.kill(runner.pid, signal.SIGKILL)  # mid-trial: a DPO stage subprocess is running
    runner.wait()
    time.sleep(1)
    _, mid = trials_by_point(grid)
    assert "RUNNING" in sum(mid.values(), [])
    assert not any((d / "DONE").exists() for d in (tmp_path / "results").glob("stages/dpo-*") if not (d / "manifest.json").exists())
    result = harness("run", str(grid))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    _, after = trials_by_point(grid)
    assert all(states.count("COMPLETE") == 1 and "RUNNING" not in states for states in after.values())
    assert len(after) == 2


def test_failing_point_fails_alone_with_its_reason_and_is_retried(tmp_path):
    grid = write_grid(tmp_path, "  dpo.data.0.size: [16, 999999]", study="f")
    result = harness("run", str(grid))
    assert result.returncode == 1
    plan, by_point = trials_by_point(grid)
    good = next(p.index for p in plan.points if p.axes["dpo.data.0.size"] == 16)
    bad = 1 - good
    assert by_point[good] == ["COMPLETE"]
    assert by_point[bad] == ["FAIL", "FAIL"]  # one retry, then left failed
    study = optuna.load_study(study_name="f", storage=open_storage(None, Layout(tmp_path / "results"), "f"))
    errors = [t.user_attrs.get("error", "") for t in study.get_trials() if t.state.name == "FAIL"]
    assert all("size 999999 is larger than the 100000 rows" in e for e in errors), errors
    status = harness("status", str(grid))
    assert "failed" in status.stdout and "999999" in status.stdout


def test_slurm_launcher_runs_stages_through_submitit_local_executor(tmp_path):
    grid = write_grid(tmp_path, "  dpo.beta: [0.1]", study="s")
    text = grid.read_text().replace("execution: {retries: 1, threads_per_worker: 1}",
                                    "execution: {retries: 0, threads_per_worker: 1, launcher: slurm, slurm: {local: true, timeout_min: 10}}")
    grid.write_text(text)
    result = harness("run", str(grid))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for stage in (tmp_path / "results" / "stages").iterdir():
        if stage.is_dir():
            assert (stage / "DONE").exists() and list((stage / "slurm").glob("*_result.pkl")), stage
