"""Security: YAML only through safe_load, no eval/exec of config text, trust_remote_code off unless a
config says so (then logged), API keys only from the environment and never written anywhere.
(`harness query` being read-only is tested in tests/harness/store/test_query.py.)"""
from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from judge_server import JudgeServer

from harness.config.schema import ModelSpec
from harness.data.models import load_model

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "trainers")
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_LOADERS = {"Loader", "UnsafeLoader", "FullLoader", "UnsafeConstructor", "FullConstructor"}


def package_sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def findings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile"):
            found.append(f"{node.func.id}() call")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
            if node.attr in UNSAFE_YAML | UNSAFE_LOADERS:
                found.append(f"yaml.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "yaml":
            found += [f"from yaml import {a.name}" for a in node.names if a.name in UNSAFE_YAML | UNSAFE_LOADERS]
        if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and isinstance(node.value, ast.Constant) \
                and node.value.value is True:
            found.append("trust_remote_code=True hard-coded")
        if isinstance(node, ast.keyword) and node.arg == "weights_only" and isinstance(node.value, ast.Constant) \
                and node.value.value is False:
            found.append("torch.load(weights_only=False): unpickles code")
    return found


def test_package_source_has_no_unsafe_yaml_eval_exec_or_forced_remote_code():
    sources = list(package_sources())
    assert len(sources) > 50  # the scan really reads the package
    problems = {str(path.relative_to(REPO)): found for path, tree in sources if (found := findings(tree))}
    assert problems == {}


def test_the_scan_catches_what_it_forbids():
    bad = ("import yaml\nfrom yaml import Loader\nyaml.load(text, Loader=yaml.Loader)\neval(text)\nexec(code)\n"
           "model = f(path, trust_remote_code=True)\ntorch.load(p, weights_only=False)\n")
    assert len(findings(ast.parse(bad))) == 7
    assert findings(ast.parse("import yaml\nyaml.safe_load(text)\nmodel.eval()\nf(trust_remote_code=cfg.flag)\n")) == []


def remote_code_model(root: Path, toy_model_dir: Path) -> tuple[Path, Path]:
    """The toy model, but its config.json asks for custom code that, if ever run, leaves a marker file."""
    model = root / "remote"
    shutil.copytree(toy_model_dir, model)
    marker = root / "remote_code_ran"
    (model / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
                                   "from transformers import LlamaForCausalLM as EvilModel, LlamaConfig as EvilConfig\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


def test_remote_code_is_not_run_unless_the_config_says_so(tmp_path, toy_model_dir, caplog):
    model_dir, marker = remote_code_model(tmp_path, toy_model_dir)
    assert ModelSpec(path=str(model_dir)).trust_remote_code is False
    with caplog.at_level(logging.WARNING):
        model, _ = load_model(ModelSpec(path=str(model_dir)))
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()
    assert "trust_remote_code" not in caplog.text


def test_trust_remote_code_when_set_is_logged(toy_model_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="harness.data.models"):
        load_model(ModelSpec(path=str(toy_model_dir), trust_remote_code=True))
    assert "trust_remote_code is ON" in caplog.text and str(toy_model_dir) in caplog.text


KEY = "sk-PLANTED-canary-key-7f3a9c0d5e1b"
GRID = """study: secrets
results_dir: {results}
method: none
execution: {{threads_per_worker: 1}}
pipeline:
  sft: {{data: [{{source: "toy:sft_mix", size: 64}}], packing: none, max_steps: 3, lr: 1.0e-3, batch_size: 8,
        micro_batch_size: 8, max_length: 96, log_every: 1}}
  eval: {{suite: [toy, mt-bench], judge: {judge}, limit: 2, data_dir: {data}}}
"""


def harness(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_planted_api_key_is_used_but_written_nowhere(tmp_path, shared_data):
    """A fake key in the environment, a grid whose eval stage judges MT-Bench through a local
    OpenAI-compatible server, then ingest, a table and plots: the server got the key; no file written by
    any of it (logs, manifests, journal, caches, DuckDB, Parquet, plots, tables) holds it."""
    from harness.toylab.build import toy_base_model_dir

    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("toy-base", "toy-tokenizer"):  # the built toy model, nothing else of the shared cache
        (cache / name).symlink_to(toy_base_model_dir().parents[1] / name)
    env = {**os.environ, "HARNESS_TEST_JUDGE_KEY": KEY, "HARNESS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    results = tmp_path / "results"
    with JudgeServer(require_key=KEY) as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(f"type: openai\nname: keyed\nmodel: test-judge\nbase_url: {server.base_url}\n"
                         "api_key_env: HARNESS_TEST_JUDGE_KEY\nbackoff_s: 0.01\nretries: 1\n")
        (tmp_path / "grid.yaml").write_text(GRID.format(results=results, judge=judge, data=shared_data))
        outputs = [harness("run", "grid.yaml", env=env, cwd=tmp_path)]
    assert server.auth_headers and set(server.auth_headers) == {f"Bearer {KEY}"}  # the key was really used
    outputs.append(harness("ingest", "--results", str(results), "--force", env=env, cwd=tmp_path))
    outputs.append(harness("plot", "--preset", "all", "--results", str(results), env=env, cwd=tmp_path))
    outputs.append(harness("query", "SELECT * FROM metrics", "--results", str(results), env=env, cwd=tmp_path))
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    kinds = {p.suffix for p in written}
    assert {".duckdb", ".parquet", ".journal", ".sqlite", ".png", ".json", ".yaml"} <= kinds, kinds
    assert any(p.name == "log" for p in written)
    assert [str(p) for p in written if KEY.encode() in p.read_bytes()] == []
    assert all(KEY not in out.stdout + out.stderr for out in outputs)
