"""What the judged benchmarks (AlpacaEval 2, Arena-Hard, MT-Bench) share: the judge, the model's
name in file layouts, toy-or-real question sets, the data dir, and JSON/JSONL writers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.config.loader import ConfigError
from harness.runner.stagedir import atomic_write_text

TOY_MAX_NEW_TOKENS = 32  # toy answers are a few tokens; the toy benchmark uses 24


def require_judge(ctx, benchmark_name: str):
    if ctx.judge is None:
        raise ConfigError(f"{benchmark_name} needs a judge: pass --judge JUDGE.yaml or a judge name", key="--judge")
    return ctx.judge


def model_name(ctx) -> str:
    """The model's name in official layouts: its directory name (a stage dir's name for STAGE/model)."""
    if ctx.options.get("model_name"):
        return ctx.options["model_name"]
    path = Path(ctx.model_dir).resolve()
    return path.parent.name if path.name == "model" else path.name


def toy_questions(ctx) -> bool:
    """Toy question sets: asked for (--toy-questions), or implied by a verifier judge."""
    if ctx.options.get("toy_questions") is not None:
        return bool(ctx.options["toy_questions"])
    return getattr(getattr(ctx.judge, "cfg", None), "type", None) == "verifier"


def short_hash(text: str) -> str:
    """A stable id (question uids, answer ids)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def data_file(ctx, *parts: str) -> Path | None:
    """DATA_DIR/parts..., or None when there is no data dir or no such file."""
    if ctx.data_dir is None:
        return None
    path = Path(ctx.data_dir).joinpath(*parts)
    return path if path.exists() else None


def missing_data(what: str, ctx, *parts: str) -> ConfigError:
    where = Path(ctx.data_dir).joinpath(*parts) if ctx.data_dir else Path(*parts)
    return ConfigError(f"{what} not found (pass --data-dir DIR holding {'/'.join(parts)}, or --toy-questions)",
                       file=str(where))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_json(path: Path, obj) -> None:
    """Pretty JSON as the official tools write it (atomic)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def answer_settings(ctx):
    """Generation settings: the run's, with short answers by default on toy question sets."""
    from harness.evals.answer_cache import generation_settings

    return generation_settings(ctx, **({"max_new_tokens": TOY_MAX_NEW_TOKENS} if toy_questions(ctx) else {}))
