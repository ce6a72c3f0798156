"""`openai`: any OpenAI-compatible chat endpoint (OpenAI, a vLLM or sglang server, a local proxy).

Base URL, model and temperature come from the judge config; the API key only from the
environment variable the config names (`api_key_env`). Requests run `concurrency` at a time.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from harness.config.eval import DEFAULT_JUDGE_MODEL
from harness.config.loader import ConfigError
from harness.judges import judge
from harness.judges.base import CallFailed, ChatJudge
from harness.judges.http import ChatClient


@judge("openai")
class OpenAIJudge(ChatJudge):
    def __init__(self, cfg, cache=None, progress: bool = True):
        super().__init__(cfg, cache, progress)
        self.model = cfg.model or DEFAULT_JUDGE_MODEL
        api_key = None
        if cfg.api_key_env:
            api_key = os.environ.get(cfg.api_key_env)
            if not api_key:
                raise ConfigError(f"environment variable {cfg.api_key_env} is not set (it holds the judge's API key; "
                                  "set api_key_env: null for endpoints without keys)", key="api_key_env")
        self.client = ChatClient(cfg.base_url, api_key, timeout_s=cfg.timeout_s, retries=cfg.retries,
                                 backoff_s=cfg.backoff_s, max_backoff_s=cfg.max_backoff_s,
                                 max_consecutive_failures=cfg.max_consecutive_failures)

    def identity(self) -> dict:
        return {"type": "openai", "model": self.model, "base_url": self.cfg.base_url.rstrip("/"),
                "temperature": self.cfg.temperature}

    def _complete(self, requests, done):
        def call(k: int):
            messages, options = requests[k]
            body = {"model": self.model, "messages": messages, "temperature": self.cfg.temperature,
                    "max_tokens": options["max_tokens"], "n": 1}
            if options["logprobs"]:
                body.update(logprobs=True, top_logprobs=options["top_logprobs"])
            try:
                outcome = self.client.chat(body)
            except CallFailed as err:
                outcome = err
            done(k, outcome)

        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            list(pool.map(call, range(len(requests))))  # list(): re-raises a bug in `done`
