"""Judge registry: `@judge("name")` classes built from a JudgeConfig by `get_judge`.

    judge = get_judge("verifier")                 # a bare registry name
    judge = get_judge("configs/judge.yaml")       # a JudgeConfig YAML file
    judge.pairwise(items) / judge.rate(items) / judge.score(prompts, responses)

Judges: `openai` (any OpenAI-compatible endpoint), `local` (an HF causal LM through the same
prompt templates), `reward_model` (a sequence-classification reward model), `verifier` (the toy
lab's verifier). Adding one is one module listed in MODULES.
"""
from __future__ import annotations

from pathlib import Path

from harness.registry import import_listed, registrar

JUDGES: dict[str, type] = {}
MODULES = ("openai", "local", "reward_model", "verifier", "pairrm")
judge = registrar(JUDGES)


def load_judges() -> dict[str, type]:
    import_listed("harness.judges", MODULES)
    return JUDGES


def judge_config(spec):
    """A JudgeConfig from a JudgeConfig, a registry name, or a YAML path."""
    from harness.config.eval import JudgeConfig
    from harness.config.loader import ConfigError, load_config

    if isinstance(spec, JudgeConfig):
        cfg, where = spec, "<judge>"
    elif str(spec) in load_judges():
        cfg, where = JudgeConfig(type=str(spec)), "--judge"
    elif str(spec).endswith((".yaml", ".yml")) or Path(spec).exists():
        cfg, where = load_config(JudgeConfig, spec), str(spec)
    else:
        raise ConfigError(f"neither a judge name ({', '.join(sorted(JUDGES))}) nor a YAML file", file="--judge",
                          key=str(spec))
    if cfg.type not in load_judges():
        raise ConfigError(f"unknown judge type {cfg.type!r} (known: {', '.join(sorted(JUDGES))})", file=where, key="type")
    return cfg


def get_judge(spec, *, cache_dir: str | Path | None = None, progress: bool = True):
    """Build a judge. Its cache lives in `cache_dir` (default $HARNESS_CACHE/judge) unless `cache: false`."""
    from harness.judges.cache import JudgeCache
    from harness.toylab.build import cache_root

    cfg = judge_config(spec)
    cls = JUDGES[cfg.type]
    cache = None
    if cfg.cache and cls.cacheable:  # score-based judges are local and deterministic: nothing to save
        cache = JudgeCache(Path(cache_dir or cache_root() / "judge") / "judge_cache.sqlite")
    return cls(cfg, cache=cache, progress=progress)
