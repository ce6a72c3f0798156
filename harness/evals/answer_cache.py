"""Model answers for the judged benchmarks, cached by (weights hash, conversation, generation settings).

A rerun never regenerates: answers found in the cache are returned without loading the model.
Missing ones are generated in batches, by vLLM's offline API on a GPU when vLLM is installed,
else by HF `generate` with the model's chat template (the CPU path never imports vLLM).
The cache lives in MODEL_DIR/eval/cache/answers.sqlite.
"""
from __future__ import annotations

import importlib.util
import logging

from harness.config.eval import GenerationConfig
from harness.judges.cache import SqliteCache, content_key

log = logging.getLogger(__name__)


def answer_cache(ctx) -> SqliteCache:
    if "answer_cache" not in ctx.options:
        ctx.options["answer_cache"] = SqliteCache(ctx.out_dir / "cache" / "answers.sqlite")
    return ctx.options["answer_cache"]


def model_weights_hash(ctx) -> str:
    if "weights_hash" not in ctx.options:
        from harness.data.models import weights_hash

        ctx.options["weights_hash"] = weights_hash(ctx.model_dir)
    return ctx.options["weights_hash"]


def generation_settings(ctx, **defaults) -> GenerationConfig:
    """The run's settings (ctx.options["generation"]), with a benchmark's defaults for unset fields."""
    from harness.config.loader import validate

    given = ctx.options.get("generation") or {}
    return validate(GenerationConfig, {**defaults, **given}, file="<generation settings>")


def generate_answers(ctx, conversations: list[list[dict]], settings: GenerationConfig, desc: str = "generate") -> list[str]:
    """One answer per conversation (a list of chat messages ending with a user turn)."""
    cache = answer_cache(ctx)
    weights, fields = model_weights_hash(ctx), settings.cache_key_fields()
    keys = [content_key("answer", weights, messages, fields) for messages in conversations]
    found = cache.get_many(keys)
    missing = sorted({k: i for i, k in enumerate(keys) if k not in found}.values())
    if missing:
        log.info("%s: generating %d answers (%d cached)", desc, len(missing), len(keys) - len(missing))
        texts = _generate(ctx, [conversations[i] for i in missing], settings, desc)
        new = {keys[i]: text for i, text in zip(missing, texts)}
        cache.put_many(new)
        found.update(new)
    return [found[k] for k in keys]


def use_vllm(settings: GenerationConfig) -> bool:
    if settings.backend != "auto":
        return settings.backend == "vllm"
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def _generate(ctx, conversations, settings: GenerationConfig, desc: str) -> list[str]:
    if use_vllm(settings):
        return _generate_vllm(ctx, conversations, settings)
    from harness.evals.generate import generate

    model, tokenizer = ctx.model_and_tokenizer
    if model.device.type == "cpu":
        import torch

        if torch.cuda.is_available():
            model.to("cuda")
    answers = generate(model, tokenizer, conversations, max_new_tokens=settings.max_new_tokens,
                       batch_size=settings.batch_size, temperature=settings.temperature, seed=settings.seed,
                       progress=ctx.progress, desc=desc)
    return [group[0] for group in answers]


def _generate_vllm(ctx, conversations, settings: GenerationConfig) -> list[str]:  # pragma: no cover - GPU only
    from vllm import LLM, SamplingParams

    from harness.data.models import resolve_model_path

    if "vllm_engine" not in ctx.options:
        ctx.options["vllm_engine"] = LLM(model=resolve_model_path(str(ctx.model_dir)), seed=settings.seed)
    params = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_new_tokens, seed=settings.seed)
    outputs = ctx.options["vllm_engine"].chat(conversations, params, use_tqdm=ctx.progress)
    return [out.outputs[0].text.strip() for out in outputs]
