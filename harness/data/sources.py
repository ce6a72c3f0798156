"""Data sources resolved into rows: `toy:NAME`, a local .jsonl/.json/.parquet file, or a hub id.

Rows are validated against the schema of their use (sft, pref, eval). A bad row is an error
naming file, line and key; with `on_bad_rows="skip"` it is counted and reported instead.
Never dropped silently.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config.loader import ConfigError

Kind = Literal["sft", "pref", "eval"]
MAX_FIELD_CHARS = 1_000_000  # an absurdly long row is an input error, not data


@dataclass
class LoadReport:
    source: str
    rows_read: int = 0
    rows_kept: int = 0
    bad_rows: list[str] = field(default_factory=list)  # "file:line: key: reason"

    def as_dict(self) -> dict:
        return {"source": self.source, "rows_read": self.rows_read, "rows_kept": self.rows_kept,
                "bad_rows": len(self.bad_rows), "bad_examples": self.bad_rows[:5]}


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: expected a non-empty list of {role, content}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            return f"messages[{i}]: expected {{role: system|user|assistant, content: str}}"
        if len(m["content"]) > MAX_FIELD_CHARS:
            return f"messages[{i}].content: row longer than {MAX_FIELD_CHARS} characters"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "messages: no non-empty assistant turn"
    return None


def _text_fields(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name not in row:
            return f"{name}: required column is missing (columns: {', '.join(sorted(row)) or 'none'})"
        if not _is_text(row[name]):
            return f"{name}: expected non-empty text"
        if len(row[name]) > MAX_FIELD_CHARS:
            return f"{name}: row longer than {MAX_FIELD_CHARS} characters"
    return None


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _from_sharegpt(turns: Any) -> Any:
    """ShareGPT `conversations` ([{from: human|gpt|system, value}]) as chat messages."""
    if not isinstance(turns, list):
        return turns
    return [{"role": SHAREGPT_ROLES.get(t.get("from"), t.get("from")), "content": t.get("value")}
            if isinstance(t, dict) else t for t in turns]


def _last_assistant(value: Any) -> Any:
    """Pairs stored as message lists (e.g. UltraFeedback binarized): the final assistant turn."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return value[-1].get("content")
    return value


def normalize_row(row: Any, kind: Kind) -> tuple[dict | None, str | None]:
    """Return (row in the canonical schema, None) or (None, 'key: reason')."""
    if not isinstance(row, dict):
        return None, f"expected a JSON object, got {type(row).__name__}"
    if kind == "sft" and "messages" not in row and "conversations" in row:
        row = {**row, "messages": _from_sharegpt(row["conversations"])}
    if kind == "pref":
        row = {**row, "chosen": _last_assistant(row.get("chosen")), "rejected": _last_assistant(row.get("rejected"))}
    if kind == "sft":
        if "messages" in row:
            problem = _check_messages(row["messages"])
            return (None, problem) if problem else ({"messages": row["messages"], "source": str(row.get("source", ""))}, None)
        problem = _text_fields(row, ("prompt", "completion"))
        if problem:
            return None, problem if "prompt" in row else "messages: need a messages column or prompt/completion columns"
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        return {"messages": messages, "source": str(row.get("source", ""))}, None
    if kind == "pref":
        problem = _text_fields(row, ("prompt", "chosen", "rejected"))
        if problem:
            return None, problem
        return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                "source": str(row.get("source", ""))}, None
    problem = _text_fields(row, ("prompt",))
    return (None, problem) if problem else (dict(row), None)


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    rows = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(f"not UTF-8 ({err.reason} at byte {err.start})", file=str(path), line=number) from None
            if not text.strip():
                continue
            try:
                rows.append((number, json.loads(text)))
            except json.JSONDecodeError as err:
                raise ConfigError(f"malformed JSON: {err.msg} at column {err.colno}", file=str(path), line=number) from None
    return rows


def _read_local(path: Path) -> list[tuple[int | None, Any]]:
    if not path.exists():
        raise ConfigError("data file not found", file=str(path))
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"not UTF-8 ({err.reason})", file=str(path)) from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"malformed JSON: {err.msg}", file=str(path), line=err.lineno) from None
        if not isinstance(data, list):
            raise ConfigError("expected a JSON array of rows", file=str(path))
        return [(None, r) for r in data]
    if path.suffix == ".parquet":
        import pandas as pd
        return [(None, r) for r in pd.read_parquet(path).to_dict("records")]
    raise ConfigError(f"unsupported data file type {path.suffix!r} (use .jsonl, .json or .parquet)", file=str(path))


def _read_hub(source: str, split: str) -> list[tuple[int | None, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as err:  # offline, missing, private ...
        raise ConfigError(f"could not load hub dataset ({type(err).__name__}: {err})", file=source) from None
    return [(None, r) for r in ds]


def read_raw(source: str, split: str = "train", size: int | None = None, seed: int = 0) -> list[tuple[int | None, Any]]:
    if source.startswith("toy:"):
        from harness.toylab.datasets import build_toy

        try:
            return [(None, r) for r in build_toy(source[4:], size, seed)]
        except KeyError as err:
            raise ConfigError(err.args[0], file=source) from None
        except ValueError as err:
            raise ConfigError(str(err), file=source, key="size") from None
    path = Path(source).expanduser()
    if path.suffix in (".jsonl", ".json", ".parquet") or path.exists():
        return _read_local(path)
    return _read_hub(source, split)


def load_rows(spec, kind: Kind, on_bad_rows: Literal["error", "skip"] = "error") -> tuple[list[dict], LoadReport]:
    """Rows of one DataSpec (source, split, size, seed, weight), validated and subset."""
    report = LoadReport(spec.source)
    raw = read_raw(spec.source, spec.split, spec.size, spec.seed)
    report.rows_read = len(raw)
    rows = []
    for index, (line, row) in enumerate(raw):
        if spec.columns and isinstance(row, dict):
            row = {spec.columns.get(k, k): v for k, v in row.items()}
        clean, problem = normalize_row(row, kind)
        if problem:
            key, _, reason = problem.partition(": ") if ": " in problem else ("", "", problem)
            err = ConfigError(reason or problem, file=spec.source, line=line if line else None, key=key or f"row {index}")
            if on_bad_rows == "error":
                raise err
            report.bad_rows.append(str(err))
            continue
        clean["source"] = clean.get("source") or spec.label
        rows.append(clean)
    if not rows:
        raise ConfigError("no usable rows" + (f" ({len(report.bad_rows)} bad)" if report.bad_rows else " (empty)"), file=spec.source)
    rows = subset(rows, spec.size, spec.seed, spec.source)
    rows = reweight(rows, spec.weight, spec.seed)
    report.rows_kept = len(rows)
    return rows, report


def subset(rows: list[dict], size: int | None, seed: int, source: str) -> list[dict]:
    """A seeded subset: the same size and seed give the same rows."""
    if size is None or size == len(rows):
        return rows
    if size > len(rows):
        raise ConfigError(f"size {size} is larger than the {len(rows)} rows available", file=source, key="size")
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]


def reweight(rows: list[dict], weight: float, seed: int) -> list[dict]:
    """Mixture weight as a row multiplier: 2.0 repeats every row, 0.5 keeps a seeded half."""
    whole, frac = int(weight), weight - int(weight)
    extra = random.Random(seed + 1).sample(rows, round(frac * len(rows))) if frac else []
    return rows * whole + extra


def load_mixture(specs, kind: Kind, on_bad_rows: Literal["error", "skip"] = "error") -> tuple[list[dict], list[LoadReport]]:
    rows, reports = [], []
    for spec in specs:
        part, report = load_rows(spec, kind, on_bad_rows)
        rows += part
        reports.append(report)
    return rows, reports


def fingerprint(rows: list[dict]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def specs_fingerprint(specs, base: str | None = None) -> str:
    """Fingerprint of data specs without loading rows: toy specs by value and toy-lab code, local files
    by content, hub ids by id and split. Feeds stage keys at plan time."""
    from harness.toylab.build import toylab_source_hash

    parts = []
    for spec in specs:
        entry = spec.model_dump(mode="json")
        path = Path(spec.source).expanduser()
        if spec.source.startswith("toy:"):
            entry["toylab"] = toylab_source_hash()  # toy rows are generated by that code
        elif path.is_file():
            entry["content"] = _file_digest(path)
        parts.append(entry)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
