"""Schemas of `harness eval`: the judge (`--judge JUDGE.yaml`) and generation settings.

Secrets never live in YAML: a judge names the environment variable that holds its API key
(`api_key_env`), and an `api_key` key in a file is an error that points at its line.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from harness.config.schema import Strict

DEFAULT_JUDGE_MODEL = "gpt-4-1106-preview"  # AlpacaEval 2's and Arena-Hard v0.1's judge


class JudgeConfig(Strict):
    """One judge. `type` is a name in the judge registry (openai, local, reward_model, verifier)."""

    type: str = "openai"
    name: str | None = None  # label in file layouts (model_judgment/<name>/); default: model, else type
    model: str | None = None  # openai: the served model name; local/reward_model: a model dir or hub id
    # openai-compatible endpoints
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = "OPENAI_API_KEY"  # name of the env variable holding the key; null: send none
    api_key: Any = Field(None, exclude=True)  # never accepted: see _no_secrets
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: PositiveInt = 4096  # upper bound; a benchmark's prompt format may ask for fewer
    logprobs: bool = True  # ask for top logprobs (AlpacaEval's weighted judge); text verdicts otherwise
    top_logprobs: PositiveInt = 5
    concurrency: PositiveInt = 8
    timeout_s: PositiveFloat = 120.0  # per request
    retries: NonNegativeInt = 4  # per request, on 429/5xx/timeouts/garbage bodies
    backoff_s: float = Field(1.0, ge=0.0)  # first retry wait; doubles each retry
    max_backoff_s: float = Field(60.0, ge=0.0)  # also caps a server's Retry-After
    parse_retries: NonNegativeInt = 1  # re-ask when the output holds no verdict
    max_consecutive_failures: PositiveInt = 20  # then the endpoint counts as down for this run
    cache: bool = True  # reuse judgments by (judge, prompt)
    # local judges (HF models)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: PositiveInt = 8
    device: str | None = None  # default: cuda when available, else cpu

    @field_validator("api_key")
    @classmethod
    def _no_secrets(cls, value):
        if value is not None:
            raise ValueError("API keys are never read from YAML: put the key in an environment variable "
                             "and name that variable in api_key_env")
        return value

    @property
    def label(self) -> str:
        return self.name or self.model or (DEFAULT_JUDGE_MODEL if self.type == "openai" else self.type)


class GenerationConfig(Strict):
    """How answers are generated. Everything here except batch_size and backend is part of the answer-cache key."""

    max_new_tokens: PositiveInt = 1024
    temperature: float = Field(0.0, ge=0.0)  # 0: greedy
    seed: int = 0
    batch_size: PositiveInt = 16
    backend: Literal["auto", "hf", "vllm"] = "auto"  # auto: vllm on GPU when installed, else HF generate

    def cache_key_fields(self) -> dict:
        return self.model_dump(exclude={"batch_size", "backend"})
