"""A small client for OpenAI-compatible `/chat/completions` endpoints, made for flaky servers.

- Retries with exponential backoff on 408/409/429/5xx, timeouts, dropped connections and bodies
  that are not an OpenAI response; a 429's `Retry-After` is honoured (capped by max_backoff_s).
- Other 4xx answers (bad request, bad key) fail at once: retrying cannot fix them.
- After `max_consecutive_failures` failed attempts in a row the endpoint counts as down, and every
  later call fails at once instead of waiting through its retries (a resumed run tries again).
- The API key goes into the Authorization header only; error texts are scrubbed of it.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request

from harness.judges.base import CallFailed

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None):
        super().__init__(reason)
        self.wait_s = wait_s


class ChatClient:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 120.0, retries: int = 4,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, max_consecutive_failures: int = 20):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._key = api_key
        self.timeout_s, self.retries = timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_consecutive_failures = max_consecutive_failures
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self.down_reason: str | None = None
        self.stats = {"calls": 0, "attempts": 0, "retries": 0, "failures": 0}

    def chat(self, body: dict) -> dict:
        """The first choice of a chat completion, or CallFailed with the last reason."""
        self._count("calls")
        reason = "no attempt"
        for attempt in range(self.retries + 1):
            if self.down_reason:
                self._count("failures")
                raise CallFailed(f"judge endpoint down: {self.down_reason}")
            if attempt:
                self._count("retries")
            self._count("attempts")
            try:
                choice = self._post(body)
            except Retryable as err:
                reason = self._scrub(str(err))
                self._failed_attempt(reason)
                if attempt < self.retries:
                    time.sleep(self._wait(attempt, err.wait_s))
                continue
            except CallFailed as err:
                self._failed_attempt(str(err))
                self._count("failures")
                raise
            with self._lock:
                self._consecutive_failures = 0
            return choice
        self._count("failures")
        raise CallFailed(f"{reason} (after {self.retries + 1} attempts)")

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:200].decode("utf-8", "replace") if err.fp else ""
            reason = f"HTTP {err.code}: {' '.join(detail.split())}".rstrip(": ")
            if err.code in RETRY_STATUS:
                raise Retryable(reason, retry_after(err.headers.get("Retry-After"))) from None
            raise CallFailed(self._scrub(reason)) from None
        except (TimeoutError, socket.timeout):
            raise Retryable(f"timeout after {self.timeout_s:g}s") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as err:
            raise Retryable(f"connection error: {getattr(err, 'reason', err)}") from None
        try:
            data = json.loads(payload)
            choice = data["choices"][0]
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                raise TypeError("choice without a message")
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise Retryable(f"not an OpenAI chat response ({type(err).__name__}): {payload[:80]!r}") from None
        return choice

    def _wait(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return min(server_wait, self.max_backoff_s)
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.75, 1.0)

    def _failed_attempt(self, reason: str) -> None:
        with self._lock:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.max_consecutive_failures and not self.down_reason:
                self.down_reason = f"{self._consecutive_failures} failed attempts in a row (last: {reason})"
                log.error("judge endpoint %s is down: %s", self.url, self.down_reason)

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
