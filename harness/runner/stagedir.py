"""A stage directory: config.yaml, manifest.json, model/, metrics.json, curves.parquet, log, DONE.

Every file is written to a temporary name and renamed, and DONE is written last: a directory
without DONE is incomplete, whatever else it holds, and is never read as a result.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

TRACKED_PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers", "lm_eval",
                    "alpaca_eval", "optuna", "duckdb", "pandas", "alignment-harness")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / "DONE").exists()


def mark_done(stage_dir: Path) -> None:
    atomic_write_text(Path(stage_dir) / "DONE", "")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_config(stage_dir: Path, config_dict: dict) -> None:
    atomic_write_text(Path(stage_dir) / "config.yaml", yaml.safe_dump(config_dict, sort_keys=False))


def write_curves(stage_dir: Path) -> None:
    """curves.jsonl (streamed during training) -> curves.parquet (long format: step, name, value)."""
    import pandas as pd

    src = Path(stage_dir) / "curves.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()] if src.exists() else []
    frame = pd.DataFrame(rows, columns=["step", "name", "value"])
    tmp = Path(stage_dir) / ".curves.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, Path(stage_dir) / "curves.parquet")
