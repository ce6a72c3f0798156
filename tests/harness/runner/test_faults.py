"""Faults the runner survives, each with real processes that really die (SIGKILL), on real tiny stages.

Faults are injected by tests/harness/runner/faults/sitecustomize.py (loaded through PYTHONPATH by the
runner and its stage subprocesses), or by the test itself (SIGKILL, SIGUSR2, a full filesystem).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import optuna
import pytest

from harness.runner import stagedir
from harness.runner.launch import stage_lock

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float = 300, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def stage_dirs(results: Path, kind: str) -> list[Path]:
    return sorted(p for p in (results / "stages").glob(f"{kind}-*") if p.is_dir())


def metric_rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT trial_id, stage, benchmark, metric FROM metrics").fetchall()


def assert_each_point_complete_once(by_point: dict, n_points: int) -> None:
    assert len(by_point) == n_points, by_point
    for point, states in by_point.items():
        assert states.count("COMPLETE") == 1 and "RUNNING" not in states, (point, states)


# ------------------------------------------------------------------ runner killed

def test_runner_killed_in_a_stage_in_a_cache_write_between_stages_and_in_ingest(tmp_path, grids, storage_url):
    """Four SIGKILLs of `harness run`, each resumed by the next run; then a clean run completes the point
    exactly once, with nothing partial ever taken for complete."""
    stages = {"sft": grids.SFT, "dpo": grids.DPO, "eval": grids.EVAL}
    grid = grids.write_grid(tmp_path, "  dpo.beta: [0.1]", study=grids.unique_study("killed"), stages=stages,
                            execution="{retries: 3, threads_per_worker: 1}")
    results, cache = tmp_path / "results", grids.private_cache(tmp_path / "cache")
    env, storage = {"HARNESS_CACHE": str(cache)}, grids.storage_args(storage_url)

    def killed_run(fault: dict) -> None:
        run = grids.harness("run", str(grid), *storage, env={**env, **grids.fault_env(fault)})
        assert run.returncode == -signal.SIGKILL, run.stdout[-2000:] + run.stderr[-2000:]

    # 1. killed while the SFT stage trains (step 2): the stage dies with the runner
    killed_run({"in": "stage", "kind": "sft", "at": "step", "step": 2, "do": "kill_runner"})
    [sft] = stage_dirs(results, "sft")
    assert not stagedir.is_done(sft) and not (sft / "manifest.json").exists() and (sft / "curves.jsonl").exists()
    assert grids.trials_by_point(grid, storage_url)[1] == {0: ["RUNNING"]}

    # 2. killed while the DPO stage writes the reference log-prob cache: its temp file is there, full, not renamed
    killed_run({"in": "stage", "kind": "dpo", "at": "ref_cache_write", "do": "kill_runner"})
    assert stagedir.is_done(sft) and json.loads((sft / "manifest.json").read_text())["resumed_from"] is None
    [dpo] = stage_dirs(results, "dpo")
    assert not stagedir.is_done(dpo)
    ref_cache = cache / "ref_logps"
    assert [p.name for p in ref_cache.iterdir() if not p.name.startswith(".")] == []
    assert [p for p in ref_cache.iterdir() if p.name.endswith(".tmp")]

    # 3. killed between stages: DPO done, its eval not started
    killed_run({"in": "runner", "at": "after_stage", "kind": "dpo", "do": "kill_self"})
    manifest = json.loads((dpo / "manifest.json").read_text())
    assert stagedir.is_done(dpo) and manifest["ref_cache_hit"] is False  # the partial cache file was not read
    assert [p.suffix for p in ref_cache.iterdir() if not p.name.startswith(".")] == [".json"]
    assert not any(stagedir.is_done(e) for e in stage_dirs(results, "eval"))

    # 4. killed inside the ingest transaction (inserting the trial's metric rows), after the point completed
    killed_run({"in": "runner", "at": "ingest", "call": 3, "do": "kill_self"})
    [ev] = stage_dirs(results, "eval")
    assert stagedir.is_done(ev)
    assert metric_rows(results / "harness.duckdb") == []  # the half-done transaction left nothing

    # 5. a clean run: nothing trained again, the point complete exactly once, every metric row once
    final = grids.harness("run", str(grid), "--json", *storage, env=env)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    _, by_point = grids.trials_by_point(grid, storage_url)
    assert_each_point_complete_once(by_point, 1)
    assert by_point[0] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    errors = {t.user_attrs.get("error") for t in grids.load_study(grid, storage_url).trials if t.state.name == "FAIL"}
    assert errors == {"worker died while running this trial"}
    assert grids.stage_launches(results, "sft") == 2 and grids.stage_launches(results, "dpo") == 2
    rows = metric_rows(results / "harness.duckdb")
    assert rows and len(rows) == len(set(rows)) == len(json.loads((ev / "metrics.json").read_text()))
    with duckdb.connect(str(results / "harness.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trials WHERE status = 'running'").fetchone()[0] == 0


# ------------------------------------------------------------------ parallel workers, locks, heartbeats

def test_three_workers_and_two_late_ones_run_each_point_once_and_train_shared_stages_once(tmp_path, grids,
                                                                                           storage_url):
    study = grids.unique_study("parallel")
    grid = grids.write_grid(tmp_path, "  dpo.beta: [0.1, 0.2, 0.3, 0.5]", study=study)
    results, storage = tmp_path / "results", grids.storage_args(storage_url)
    first = grids.popen("run", str(grid), "--workers", "3", *storage)
    try:
        wait_for(lambda: list(results.glob("stages/sft-*/log")), what="the shared SFT stage to start")
        late = grids.harness("run", str(grid), "--workers", "2", *storage, timeout=600)
        assert first.wait(timeout=600) == 0
    finally:
        first.kill()
    assert late.returncode == 0, late.stdout[-2000:] + late.stderr[-2000:]
    _, by_point = grids.trials_by_point(grid, storage_url)
    assert by_point == {p: ["COMPLETE"] for p in range(4)}
    assert grids.stage_launches(results, "sft") == 1  # four trials, one shared SFT, trained once
    assert grids.stage_launches(results, "dpo") == 4


def test_a_killed_workers_stage_lock_is_taken_over_at_once(tmp_path):
    """Stage locks are flocks: the kernel releases a dead holder's lock, so a SIGKILLed worker's lock is
    taken over immediately, while a live holder's is never taken."""
    stage = tmp_path / "stages" / "sft-0123"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom harness.runner.launch import stage_lock\n"
        "with stage_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n"), str(stage)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        taken = threading.Event()

        def take():
            with stage_lock(stage, poll=0.05):
                taken.set()

        threading.Thread(target=take, daemon=True).start()
        assert not taken.wait(2.0)  # a live holder keeps it
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.time()
        assert taken.wait(10.0) and time.time() - killed_at < 1.0
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "stages" / ".sft-0123.lock").read_text().endswith(f":{os.getpid()}\n")


SFT_LONG = ('{data: [{source: "toy:sft_mix", size: 256}], packing: none, max_steps: 24, save_every: 4, lr: 1.0e-3, '
            'batch_size: 8, micro_batch_size: 8, max_length: 96, log_every: 1}')


def test_a_killed_workers_heartbeat_stops_and_its_trial_is_failed_then_retried_once(tmp_path, grids, pg_url):
    """Many machines, one PostgreSQL: a worker's death is seen only through its stopped heartbeat."""
    study = grids.unique_study("heartbeat")
    grid = grids.write_grid(tmp_path, "  sft.lr: [1.0e-3]", study=study, stages={"sft": SFT_LONG})
    env = {"HARNESS_HEARTBEAT": "1,5"}  # beat every second, stale after 5 s
    fault = {"in": "stage", "kind": "sft", "at": "step", "step": 3, "do": "kill_runner"}
    killed = grids.harness("run", str(grid), "--storage", pg_url, env={**env, **grids.fault_env(fault)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    killed_at = time.time()
    storage = optuna.storages.RDBStorage(pg_url, heartbeat_interval=1, grace_period=5)
    loaded = optuna.load_study(study_name=study, storage=storage)
    optuna.storages.fail_stale_trials(loaded)  # within the grace period: the trial is left alone
    assert [t.state.name for t in loaded.trials] == ["RUNNING"]
    time.sleep(max(0.0, killed_at + 6 - time.time()))
    optuna.storages.fail_stale_trials(loaded)  # Optuna's stale-trial check, as every worker runs it
    assert [t.state.name for t in loaded.trials] == ["FAIL"]
    rerun = grids.harness("run", str(grid), "--storage", pg_url, env=env)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert grids.trials_by_point(grid, pg_url)[1] == {0: ["FAIL", "COMPLETE"]}
    assert grids.stage_launches(tmp_path / "results", "sft") == 2


# ------------------------------------------------------------------ preemption and resumption

def loss_steps(stage: Path) -> list[int]:
    rows = [json.loads(line) for line in (stage / "curves.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["name"] == "loss"]


def assert_resumed_from_saved_step(stage: Path, saved: int, total: int) -> None:
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith(f"checkpoint-{saved}") and manifest["steps"] == total
    steps = loss_steps(stage)  # the killed run logged 1..k (k >= saved), the resumed one saved+1..total
    resumed = list(range(saved + 1, total + 1))
    killed = steps[:len(steps) - len(resumed)]
    assert steps[len(killed):] == resumed and killed == list(range(1, len(killed) + 1)) and len(killed) >= saved, steps


def saved_step(stage: Path) -> int:
    from trainers.common import last_checkpoint

    found = last_checkpoint(stage / "checkpoints")
    return int(found.rsplit("-", 1)[1]) if found else 0


def test_a_trainer_killed_mid_run_resumes_from_its_last_saved_step(tmp_path, grids):
    config = tmp_path / "sft.yaml"
    config.write_text("model: {path: toy}\n" + "\n".join(
        f"{k}: {v}" for k, v in [("data", '[{source: "toy:sft_mix", size: 256}]'), ("packing", "none"),
                                 ("max_steps", 24), ("save_every", 4), ("lr", "1.0e-3"), ("batch_size", 8),
                                 ("micro_batch_size", 8), ("max_length", 96), ("log_every", 1), ("threads", 1)]))
    stage = tmp_path / "stage"
    trainer = grids.popen("train", "sft", str(config), "--out", str(stage))
    try:
        wait_for(lambda: saved_step(stage) >= 4 or trainer.poll() is not None, what="a checkpoint")
        trainer.send_signal(signal.SIGKILL)
    finally:
        trainer.kill()
        trainer.wait()
    saved = saved_step(stage)
    assert 4 <= saved < 24 and not stagedir.is_done(stage)
    again = grids.harness("train", "sft", str(config), "--out", str(stage))
    assert again.returncode == 0, again.stderr[-2000:]
    assert_resumed_from_saved_step(stage, saved, 24)


def submitit_task(marker: str) -> int | None:
    """Pid of submitit's task process (`python -m submitit.core._submit FOLDER`) whose command names `marker`."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in cmdline and any(marker in part for part in cmdline):
            return int(proc.name)
    return None


def test_a_preempted_slurm_stage_is_requeued_and_resumes_from_its_checkpoint(tmp_path, grids):
    """submitit's local executor: SIGUSR2 (Slurm's preemption notice) makes submitit requeue the job; the
    requeued stage resumes from its last checkpoint and the trial completes."""
    grid = grids.write_grid(tmp_path, "  sft.lr: [1.0e-3]", study="preempt", stages={"sft": SFT_LONG},
                            execution="{retries: 0, threads_per_worker: 1, launcher: slurm, slurm: {local: true}}")
    runner = grids.popen("run", str(grid))
    try:
        wait_for(lambda: [d for d in stage_dirs(tmp_path / "results", "sft") if saved_step(d) >= 4]
                 or runner.poll() is not None, what="a checkpoint")
        [stage] = stage_dirs(tmp_path / "results", "sft")
        task = submitit_task(str(tmp_path))
        assert task is not None and not stagedir.is_done(stage)
        os.kill(task, signal.SIGUSR2)
        wait_for(lambda: grids.stage_launches(tmp_path / "results") == 2, what="the requeued stage")
        saved = saved_step(stage)  # the requeued stage resumes from here (the killed one saved nothing since)
        assert runner.wait(timeout=600) == 0
    finally:
        runner.kill()
    assert_resumed_from_saved_step(stage, saved, 24)
    assert grids.trials_by_point(grid)[1] == {0: ["COMPLETE"]}
    assert "Requeued" in "".join(p.read_text() for p in (stage / "slurm").glob("*_log.*"))


# ------------------------------------------------------------------ failures inside a trial

def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}"


def test_failures_inside_trials_fail_each_trial_alone_with_its_reason(tmp_path, grids):
    """An exception in the trainer, a NaN loss, an out-of-memory error and a full disk, one per grid point:
    each fails its trial with the reason in trials.error; the healthy point completes."""
    from harness.grid.expand import load_plan

    faults = {0.002: "exception", 0.003: "nan", 0.004: "oom"}
    grid = grids.write_grid(tmp_path, "  sft.lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3, 5.0e-3]", study="faults",
                            stages={"sft": grids.SFT}, execution="{retries: 0, threads_per_worker: 1}")
    plan = load_plan(grid)
    full = next(plan.stages[c[0]].dirname for p, c in zip(plan.points, plan.chains) if p.axes["sft.lr"] == 0.005)
    disk = tmp_path / "results" / "stages" / full
    mount_tmpfs(disk, "1m")  # that stage's directory is a 1 MiB filesystem: the model (4 MB) cannot fit
    try:
        env = grids.fault_env(*[{"in": "stage", "kind": "sft", "config": {"lr": lr}, "at": "step", "step": 2, "do": do}
                                for lr, do in faults.items()])
        run = grids.harness("run", str(grid), "--workers", "2", env=env, timeout=600)
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "results" / "harness.duckdb"), read_only=True) as con:
        rows = dict(con.execute('SELECT "sft__lr", status || \': \' || coalesce(error, \'\') FROM trials').fetchall())
    assert rows[0.001] == "complete: "
    expected = {0.002: "RuntimeError: injected trainer exception", 0.003: "NonFiniteLossError: non-finite loss nan",
                0.004: "OutOfMemoryError: CUDA out of memory", 0.005: "No space left on device"}
    for lr, reason in expected.items():
        assert rows[lr].startswith("failed: ") and reason in rows[lr], (lr, rows[lr])


# ------------------------------------------------------------------ judge faults inside a trial

def test_a_dead_judge_costs_its_judgments_not_the_trial(tmp_path, grids, shared_data):
    """The eval stage's judge endpoint refuses every connection: the judged benchmark's rows carry the
    failures (value NULL) into the store, the unjudged toy benchmark is scored, the trial completes."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"type: openai\nname: dead\nmodel: m\nbase_url: http://127.0.0.1:{port}/v1\napi_key_env: null\n"
                     "retries: 1\nbackoff_s: 0.01\ntimeout_s: 2\n")
    stages = {"sft": grids.SFT, "eval": f"{{suite: [toy, mt-bench], judge: {judge}, limit: 1, data_dir: {shared_data}}}"}
    grid = grids.write_grid(tmp_path, "  sft.lr: [1.0e-3]", study="deadjudge", stages=stages)
    run = grids.harness("run", str(grid), env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert grids.trials_by_point(grid)[1] == {0: ["COMPLETE"]}
    with duckdb.connect(str(tmp_path / "results" / "harness.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT benchmark, metric, value, n, failures FROM metrics").fetchall()
    judged = [r for r in rows if r[0] == "mt-bench" and r[1] == "score"]
    assert judged and all(value is None and failures > 0 for _, _, value, _, failures in judged), rows
    assert [r for r in rows if (r[0], r[1]) == ("toy", "accuracy") and r[2] is not None and r[4] == 0]
