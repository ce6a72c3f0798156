"""Fault injection for the runner's fault tests, loaded by Python at start-up (`sitecustomize`) in
every process whose PYTHONPATH holds this folder: the runner, its workers and its stage subprocesses.

It does nothing unless HARNESS_TEST_FAULTS holds a JSON list of faults; each fault names where it
fires and what it does there, and fires once per process:

  {"in": "stage", "kind": "sft", "config": {"lr": 0.002}, "at": "step", "step": 2, "do": "exception"}
      in a `harness train KIND` process whose input config matches, at that training step:
      exception | oom (torch.OutOfMemoryError) | nan (a weight set to NaN, so the loss is NaN)
      | kill_runner (SIGKILL to the parent, the runner; the stage then dies with it)
  {"in": "stage", "kind": "dpo", "at": "ref_cache_write", "do": "kill_runner"}
      while the reference log-prob cache file is written (its temp file full, not yet renamed)
  {"in": "runner", "at": "after_stage", "kind": "dpo", "do": "kill_self"}
      in `harness run`, after a stage of that kind finished, before the next one starts
  {"in": "runner", "at": "ingest", "call": 3, "do": "kill_self"}
      in `harness run`, inside the ingest transaction, at that row insert (3 = a trial's metrics)

Every kill is a real SIGKILL of a real process; the code under test runs unchanged around it.
"""
import json
import os
import signal
import sys
import time

FAULTS = json.loads(os.environ.get("HARNESS_TEST_FAULTS") or "[]")
ARGV = sys.argv[1:]  # python -m harness.cli ARGV...


def _die(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    time.sleep(60)  # the runner's death kills this stage (PR_SET_PDEATHSIG), or this is the runner


def _act(action: str, model=None) -> None:
    if action == "exception":
        raise RuntimeError("injected trainer exception (fault test)")
    if action == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated by the fault test)")
    if action == "nan":
        import torch

        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return
    if action == "kill_runner":
        _die(os.getppid())
    if action == "kill_self":
        _die(os.getpid())


def _stage_config() -> dict:
    import yaml

    with open(ARGV[2], encoding="utf-8") as f:
        return yaml.safe_load(f)


def _applies_to_stage(fault: dict) -> bool:
    if fault.get("in") != "stage" or ARGV[:1] != ["train"] or len(ARGV) < 3 or ARGV[1] != fault["kind"]:
        return False
    config = _stage_config()
    return all(config.get(k) == v for k, v in fault.get("config", {}).items())


def _at_step(fault: dict) -> None:
    from transformers import Trainer

    original = Trainer.training_step

    def training_step(self, model, *args, **kwargs):
        if self.state.global_step + 1 == fault.get("step", 1) and not fault.get("fired"):
            fault["fired"] = True
            _act(fault["do"], model)
        return original(self, model, *args, **kwargs)

    Trainer.training_step = training_step


def _at_ref_cache_write(fault: dict) -> None:
    original = os.fsync

    def fsync(fd):
        original(fd)
        if "ref_logps" in os.readlink(f"/proc/self/fd/{fd}") and not fault.get("fired"):
            fault["fired"] = True
            _act(fault["do"])

    os.fsync = fsync


def _after_stage(fault: dict) -> None:
    from harness.runner.runner import Worker

    original = Worker.run_stage

    def run_stage(self, node, *args, **kwargs):
        seconds = original(self, node, *args, **kwargs)
        if node.kind == fault["kind"] and not fault.get("fired"):
            fault["fired"] = True
            _act(fault["do"])
        return seconds

    Worker.run_stage = run_stage


def _at_ingest(fault: dict) -> None:
    from harness.store import ingest

    original, calls = ingest._insert, []

    def insert(con, table, rows):
        calls.append(table)
        if len(calls) == fault.get("call", 1):
            _act(fault["do"])
        return original(con, table, rows)

    ingest._insert = insert


def install() -> None:
    for fault in FAULTS:
        if _applies_to_stage(fault):
            {"step": _at_step, "ref_cache_write": _at_ref_cache_write}[fault["at"]](fault)
        elif fault.get("in") == "runner" and ARGV[:1] == ["run"]:
            {"after_stage": _after_stage, "ingest": _at_ingest}[fault["at"]](fault)


if FAULTS:
    install()
