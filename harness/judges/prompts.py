"""The official judge prompt templates: FastChat's MT-Bench prompts, Arena-Hard v0.1's, AlpacaEval 2's.

FastChat's and Arena-Hard's ship with this package (`templates/`, see NOTICE); a data dir's
`mt_bench/judge_prompts.jsonl` wins when present. AlpacaEval's comes from the installed package.
"""
from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent / "templates"
ALPACA_EVAL_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"


def fastchat_prompts(data_dir: Path | None = None) -> dict[str, dict]:
    """name -> {system_prompt, prompt_template, output_format, ...} (single-v1, single-math-v1, ...)."""
    path = Path(data_dir) / "mt_bench" / "judge_prompts.jsonl" if data_dir else None
    if path is None or not path.exists():
        path = HERE / "fastchat_judge_prompts.jsonl"
    return _read_jsonl_by_name(str(path))


@lru_cache(maxsize=4)
def _read_jsonl_by_name(path: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["name"]: row for row in rows}


@lru_cache(maxsize=1)
def arena_hard_v01() -> dict:
    """{system_prompt, prompt_template: [str], regex_pattern, judge_model, baseline_model, ...}."""
    return yaml.safe_load((HERE / "arena_hard_v0.1.yaml").read_text(encoding="utf-8"))


def import_alpaca_eval():
    """alpaca_eval imports pkg_resources, which warns on import; the warning is not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alpaca_eval.completion_parsers  # noqa: F401
        import alpaca_eval.utils  # noqa: F401
    import alpaca_eval

    return alpaca_eval


@lru_cache(maxsize=1)
def alpaca_eval_template() -> str:
    """The weighted AlpacaEval 2 judge prompt (ChatML text with {instruction}, {output_1}, {output_2})."""
    alpaca_eval = import_alpaca_eval()
    configs = Path(alpaca_eval.__file__).parent / "evaluators_configs"
    config = yaml.safe_load((configs / ALPACA_EVAL_ANNOTATOR / "configs.yaml").read_text())[ALPACA_EVAL_ANNOTATOR]
    return (configs / config["prompt_template"]).read_text(encoding="utf-8")
