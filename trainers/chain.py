"""A chain of DPO runs, each with its own reference model: what sDPO steps and online-DPO rounds share.

Each link trains in `output_dir/<name>_<i>/` (its model in `model/`, its curves in `curves.jsonl`) and
writes `link.json` last, so a restarted stage skips the links that finished. The stage's own
`curves.jsonl` gets every link's rows with the step shifted to a global optimizer step, plus
per-link summary rows (step = link index), and its `model/` is the last link's model.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM


def load_causal_lm(path: str | Path):
    """Default model loader for chain links (the harness passes its own, with dtype and attention set)."""
    return AutoModelForCausalLM.from_pretrained(str(path))


def frozen(model):
    """A reference model: eval mode, no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def link_dir(output_dir: Path, name: str, index: int) -> Path:
    return Path(output_dir) / f"{name}_{index}"


def read_link(directory: Path) -> dict | None:
    """The record of a finished link, or None if it did not finish."""
    path = Path(directory) / "link.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_link(directory: Path, record: dict) -> None:
    """Write `link.json` atomically: its presence means the link's model is complete."""
    path = Path(directory) / "link.json"
    tmp = path.with_name(".link.json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def result_fields(result) -> dict[str, Any]:
    """A trainer result (dataclass) as a JSON-ready dict for link records (paths as text)."""
    fields = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else dict(vars(result))
    return json.loads(json.dumps(fields, default=str))


def read_curve_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_stage_curves(output_dir: Path, links: list[tuple[Path, int, dict[str, float]]], prefix: str) -> None:
    """Stage `curves.jsonl` from the links' curves (global steps) and per-link summary rows.

    `links`: (link directory, optimizer steps it ran, {summary name: value}) in order; a summary
    row is (step = link index starting at 1, name = f"{prefix}/{summary name}", value).
    """
    rows, offset = [], 0
    for index, (directory, steps, summary) in enumerate(links, start=1):
        rows += [{**r, "step": r["step"] + offset} for r in read_curve_rows(directory / "curves.jsonl")]
        offset += steps
        rows += [{"step": index, "name": f"{prefix}/{name}", "value": float(value)}
                 for name, value in summary.items() if value is not None]
    tmp = Path(output_dir) / ".curves.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, Path(output_dir) / "curves.jsonl")


def publish_model(src: Path, dst: Path) -> None:
    """Make `dst` a copy of the model directory `src` (hard links where the filesystem allows)."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, tmp, copy_function=link_or_copy)
    os.replace(tmp, dst)
