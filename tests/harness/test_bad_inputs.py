"""The bad-input corpus (tests/bad_inputs/cases.yaml) through the `harness` CLI: one error line naming
file, line and key, a non-zero exit, and a results store left byte for byte as it was."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
STORE_GRID = """study: store
method: none
execution: {threads_per_worker: 1}
pipeline:
  sft: {data: [{source: "toy:sft_mix", size: 64}], packing: none, max_steps: 3, lr: 1.0e-3, batch_size: 8,
        micro_batch_size: 8, max_length: 96, log_every: 1}
  eval: {suite: [toy], limit: 2}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A working directory holding store.yaml and results/: a real tiny study, trained, evaluated, ingested."""
    work = tmp_path_factory.mktemp("bad_inputs")
    (work / "store.yaml").write_text(STORE_GRID)
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "store.yaml"], cwd=work, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (work / "results" / "harness.duckdb").exists() and list(work.glob("results/stages/eval-*/DONE"))
    return work


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def case_setup(setup: dict, work: Path):
    results = work / "results"
    if "long_row" in setup:  # kept out of the repository: 1 MB of text
        row = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y" * 1_000_001}]}
        (work / "case" / setup["long_row"]).write_text(json.dumps(row) + "\n")
    damaged = setup.get("corrupt")
    if damaged:
        [target] = results.glob(damaged["file"])
        saved = target.read_bytes()
        text = damaged["text"].encode()
        target.write_bytes(saved + text if damaged.get("append") else text)
    holder = None
    if setup.get("lock_db"):
        holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\ncon = duckdb.connect(sys.argv[1])\n"
                                   "print('locked', flush=True)\ntime.sleep(600)", str(results / "harness.duckdb")],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        if damaged:
            target.write_bytes(saved)
        if holder is not None:
            holder.kill()
            holder.wait()


def run_cli(argv: list[str], work: Path, in_subprocess: bool, capsys) -> tuple[int, str]:
    if in_subprocess:
        done = subprocess.run([sys.executable, "-m", "harness.cli", *argv], cwd=work, capture_output=True, text=True,
                              timeout=300)
        return done.returncode, done.stderr
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def test_the_corpus_is_big_and_every_folder_has_a_case():
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert len(CASES) >= 30 and folders <= set(CASES), folders - set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_error_and_changes_nothing(name, store, monkeypatch, capsys):
    case = CASES[name]
    monkeypatch.chdir(store)
    for scratch in ("case", "scratch"):
        shutil.rmtree(store / scratch, ignore_errors=True)
    if (CORPUS / name).is_dir():
        shutil.copytree(CORPUS / name, store / "case")
    model = next(store.glob("results/stages/sft-*")).relative_to(store)
    argv = [arg.format(model=model) for arg in case["argv"]]
    with case_setup(case.get("setup", {}), store):
        before = snapshot(store / "results")
        code, err = run_cli(argv, store, case.get("subprocess", False), capsys)
        after = snapshot(store / "results")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, (code, err[-3000:])
    where = case["where"].format(results=store / "results")
    assert lines[0].startswith(f"harness: error: {where}"), lines[0]
    assert case["reason"] in lines[0][len("harness: error: "):], lines[0]
    assert after == before, {k for k in set(before) | set(after) if before.get(k) != after.get(k)}

