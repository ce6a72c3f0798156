"""Launch one stage as a subprocess: `harness train KIND CONFIG --out DIR` or `harness eval ...`,
plain, under `accelerate launch` (several GPUs), or as a Slurm job through submitit.

A stage talks to the runner only through files in its directory, so a crash, OOM or NaN costs
that stage alone, and Slurm or a second machine changes nothing.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from harness.runner import stagedir


class StageFailed(RuntimeError):
    """A stage subprocess exited non-zero; the message is the stage and its last error line."""


class StageStopped(RuntimeError):
    """The runner stopped a running stage because its watcher asked to (a pruned search trial)."""


Watch = Callable[[], bool]  # polled while a stage runs; True stops it
WATCH_EVERY = 1.0  # seconds between polls


@dataclass
class LaunchSettings:
    threads: int | None = None
    launcher: str = "local"  # local | slurm
    gpus_per_stage: int = 0
    deepspeed_config: str | None = None
    slurm: dict | None = None
    env: dict | None = None


def stage_command(kind: str, config_path: Path, out: Path, eval_cfg: dict | None = None) -> list[str]:
    if kind == "eval":
        cmd = ["eval", str(eval_cfg["model_dir"]), "--suite", ",".join(eval_cfg["suite"]), "--out", str(out)]
        for flag, key in (("--judge", "judge"), ("--limit", "limit"), ("--data-dir", "data_dir")):
            if eval_cfg.get(key) is not None:
                cmd += [flag, str(eval_cfg[key])]
        return cmd + ["--no-progress"]
    return ["train", kind.replace("_", "-"), str(config_path), "--out", str(out)]


def full_command(args: list[str], settings: LaunchSettings) -> list[str]:
    if settings.gpus_per_stage > 1 and args[0] == "train":
        accel = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(settings.gpus_per_stage)]
        if settings.deepspeed_config:
            accel += ["--use_deepspeed", "--deepspeed_config_file", settings.deepspeed_config]
        return accel + ["-m", "harness.cli", *args]
    return [sys.executable, "-m", "harness.cli", *args]


def _last_error_line(log: Path) -> str:
    lines = [l.strip() for l in log.read_text(errors="replace").splitlines() if l.strip()] if log.exists() else []
    for line in reversed(lines):
        if "error" in line.lower() or "Error" in line:
            return line[:500]
    return lines[-1][:500] if lines else "no output"


def die_with_parent() -> None:
    """Linux: the child gets SIGKILL when its parent dies, so no orphan keeps writing a stage
    directory whose lock its dead parent has released."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_subprocess(cmd: list[str], log: Path, env: dict, watch: Watch | None = None) -> int:
    """Run `cmd` to its end, its output appended to `log`. With `watch`, poll it every WATCH_EVERY
    seconds and stop the process (SIGTERM, then SIGKILL) when it returns True: raises StageStopped."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
        try:
            while True:
                try:
                    return proc.wait(timeout=WATCH_EVERY if watch else None)
                except subprocess.TimeoutExpired:
                    if watch():
                        _stop(proc)
                        out.write(b"stopped by the runner (search trial pruned)\n")
                        raise StageStopped(f"{log.parent.name} stopped by the runner")
        finally:
            if proc.poll() is None:  # the runner itself is being interrupted: take the stage down with it
                _stop(proc)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _env(settings: LaunchSettings) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(settings.env or {}))
    if settings.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(settings.threads)
        env["HARNESS_THREADS"] = str(settings.threads)
    return env


def launch(kind: str, config: dict, out: Path, settings: LaunchSettings, eval_cfg: dict | None = None,
           watch: Watch | None = None) -> float:
    """Run the stage to completion (DONE written). Returns its wall seconds. Raises StageFailed, or
    StageStopped when `watch` (polled while it runs) asked to stop it."""
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "input.yaml"
    stagedir.atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    args = stage_command(kind, config_path, out, eval_cfg)
    if kind == "eval" and settings.threads:
        args += ["--threads", str(settings.threads)]
    cmd = full_command(args, settings)
    log = out / "log"
    start = time.time()
    if settings.launcher == "slurm":
        code = _submit_slurm(cmd, log, _env(settings), out, settings.slurm or {}, watch)
    else:
        code = run_subprocess(cmd, log, _env(settings), watch)
    if code != 0 or not stagedir.is_done(out):
        raise StageFailed(f"{out.name} failed (exit {code}): {_last_error_line(log)}")
    return time.time() - start


def _submit_slurm(cmd: list[str], log: Path, env: dict, out: Path, slurm: dict, watch: Watch | None = None) -> int:
    """One Slurm job per stage through submitit; `slurm.local` uses submitit's local executor."""
    try:
        import submitit
    except ImportError:
        raise StageFailed("launcher slurm needs the `slurm` extra (pip install 'alignment-harness[slurm]')") from None
    folder = out / "slurm"
    executor = submitit.LocalExecutor(folder=folder) if slurm.get("local") else submitit.AutoExecutor(folder=folder)
    params = {"timeout_min": slurm.get("timeout_min", 240)}
    if not slurm.get("local"):
        params.update({k: v for k, v in {"slurm_partition": slurm.get("partition"), "slurm_account": slurm.get("account"),
                                         "gpus_per_node": slurm.get("gpus_per_node"),
                                         "cpus_per_task": slurm.get("cpus_per_task")}.items() if v is not None})
    executor.update_parameters(**params)
    job = executor.submit(run_subprocess, cmd, log, env)
    while watch is not None and not job.done():
        if watch():
            job.cancel()
            raise StageStopped(f"slurm job {job.job_id} cancelled by the runner (search trial pruned)")
        time.sleep(WATCH_EVERY)
    try:
        return job.result()
    except Exception as err:  # the job died (preempted past its requeues, killed, node failure)
        with log.open("a") as f:
            f.write(f"slurm job {job.job_id} failed: {err}\n")
        return 1


@contextmanager
def stage_lock(stage_dir: Path, poll: float = 1.0):
    """Exclusive lock on a stage while one worker trains it; others wait, then find DONE.

    An flock dies with its process, so a killed worker's lock is released by the kernel and
    taken over at once: no stale lock survives a dead holder on this machine.
    """
    lock_path = stage_dir.parent / f".{stage_dir.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(poll)
        handle.write(f"{os.uname().nodename}:{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
