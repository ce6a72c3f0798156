"""A real OpenAI-compatible chat server on 127.0.0.1 for judge tests (stdlib http.server in a thread).

It answers `/v1/chat/completions` in the OpenAI format. What it answers is scripted per request:
`script(n, body) -> action`, n counting from 0, where an action is
  "ok"        a verdict in the format the prompt asks for (AlpacaEval m/M with logprobs when asked,
              Arena-Hard [[A>B]], MT-Bench [[rating]]), from `responder(body)`
  "text"      the verdict without logprobs (a judge that returns none)
  "500"/"503"/"401"  that HTTP status;  "429" with Retry-After: 0
  "garbage"   a 200 whose body is not JSON;  "babble" a valid response whose text holds no verdict
  "empty"     a valid response with empty content;  "hang" sleep `hang_s`, then answer
  "drop"      close the connection without answering
Every request is recorded (body and Authorization header) in `requests`.
"""
from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def default_responder(body: dict) -> tuple[str, list[dict] | None]:
    """(text, top_logprobs) for the judge format the prompt asks for."""
    prompt = "\n".join(m["content"] for m in body["messages"])
    if '"model_identifier": "M"' in prompt:  # AlpacaEval 2: prefer the second output, P(M) = 0.8
        return "M", [{"token": "M", "logprob": math.log(0.8)}, {"token": "m", "logprob": math.log(0.2)}]
    if "[[A>>B]]" in prompt:  # Arena-Hard
        return "Assistant A is better.\n\nMy final verdict is: [[A>B]]", None
    if "[[rating]]" in prompt:  # MT-Bench
        return "The answer is fine.\n\nRating: [[7]]", None
    return "no idea", None


def chat_response(text: str, top: list[dict] | None, with_logprobs: bool) -> dict:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    if with_logprobs and top:
        choice["logprobs"] = {"content": [{**max(top, key=lambda t: t["logprob"]), "top_logprobs": top}]}
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": "test-judge",
            "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class JudgeServer:
    def __init__(self, script: Callable[[int, dict], str] | None = None,
                 responder: Callable[[dict], tuple[str, list[dict] | None]] = default_responder,
                 hang_s: float = 3.0, require_key: str | None = None, port: int = 0):
        self.script = script or (lambda n, body: "ok")
        self.responder, self.hang_s, self.require_key = responder, hang_s, require_key
        self.requests: list[dict] = []
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Stop answering and close the port (a server that dies mid-run)."""
        self._server.shutdown()
        self._server.server_close()

    def count(self, needle: str = "") -> int:
        return sum(needle in json.dumps(b) for b in self.requests)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.auth_headers.append(self.headers.get("Authorization"))
                if server.require_key and self.headers.get("Authorization") != f"Bearer {server.require_key}":
                    return self._send(401, {"error": {"message": "bad key"}})
                action = server.script(n, body)
                if action == "hang":
                    time.sleep(server.hang_s)
                    action = "ok"
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if action in ("500", "503", "401"):
                    return self._send(int(action), {"error": {"message": f"scripted {action}"}})
                if action == "429":
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                if action == "garbage":
                    return self._send(200, b"<html>oops</html>")
                text, top = server.responder(body)
                text = {"babble": "I like turtles.", "empty": ""}.get(action, text)
                self._send(200, chat_response(text, top, body.get("logprobs") and action != "text"))

            def _send(self, status: int, payload, headers: dict | None = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def toy_verdicts(body: dict) -> tuple[str, list[dict] | None]:
    """A judge that reads toy prompts like the verifier does, in each benchmark's format."""
    from harness.toylab.tasks import verify

    prompt = body["messages"][-1]["content"]
    if '"model_identifier": "M"' in prompt:
        instruction = re.search(r'"instruction": """(.*?)""",', prompt, re.S).group(1)
        m, big_m = re.findall(r'"output": """(.*?)"""', prompt, re.S)
        a, b = verify(instruction, m).score, verify(instruction, big_m).score
        p_m = 1.0 if a > b else 0.0 if b > a else 0.5
        top = [{"token": t, "logprob": math.log(p)} for t, p in (("m", p_m), ("M", 1 - p_m)) if p > 0]
        return ("m" if p_m >= 0.5 else "M"), top
    if "<|User Prompt|>" in prompt:
        q, a, b = re.search(r"<\|User Prompt\|>\n(.*?)\n\n<\|The Start of Assistant A's Answer\|>\n(.*?)\n"
                            r"<\|The End of Assistant A's Answer\|>.*?Answer\|>\n(.*?)\n<\|The End", prompt, re.S).groups()
        diff = verify(q, a).score - verify(q, b).score
        label = "A=B" if diff == 0 else ("A>B" if diff > 0 else "B>A")
        return f"My final verdict is: [[{label}]]", None
    return default_responder(body)
