"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol.

It stands in for an LLM endpoint (the one thing that cannot run here): the platform reaches it
through the official `openai` client, over real sockets, streaming (server-sent events, with a
usage chunk when `stream_options.include_usage` is set) or not. What it answers is scripted per
request by the test: a faithful answer built from the FACTS in the prompt (the default), one
citing a reading that did not matter and a made-up number, malformed JSON, an HTTP error with or
without Retry-After, a slow answer, or a stream that breaks off with an error event. Every request (headers and body) is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def facts_from(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for m in messages:
        if m.get("role") == "user" and str(m.get("content", "")).startswith("FACTS:"):
            return json.loads(m["content"][len("FACTS:"):])
    raise ValueError("no FACTS message in the prompt")


def faithful_answer(facts: dict[str, Any]) -> dict[str, Any]:
    top = facts["top_features"][:2]
    by = {r["feature"]: r for r in facts["readings"]}
    cites = " and ".join(f"{f} at {by[f]['value']}" + (f" {by[f]['unit']}" if by[f]["unit"] else "") for f in top)
    verdict = "A failure is likely" if facts["predicted_failure"] else "No failure is expected"
    return {"summary": f"{verdict}: the failure probability is {facts['failure_probability_percent']}% against an "
                       f"alert threshold of {facts['alert_threshold_percent']}%. It is driven mostly by {cites}.",
            "evidence": top,
            "recommended_actions": [f"Check {top[0]} first." if top else "Run the routine inspection."]}


def unfaithful_answer(facts: dict[str, Any]) -> dict[str, Any]:
    """Cites a reading outside the top attributions (when there is one) and invents a value."""
    others = [r["feature"] for r in facts["readings"] if r["feature"] not in facts["top_features"]]
    culprit = others[0] if others else facts["top_features"][0]
    return {"summary": f"The machine will fail because {culprit} is far too high at 987.6.",
            "evidence": [culprit], "recommended_actions": [f"Replace the part behind {culprit}."]}


class LoopbackOpenAI:
    def __init__(self) -> None:
        self.script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                started = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                rec = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                       "at": started}
                with owner.lock:
                    owner.requests.append(rec)
                    step = owner.script.popleft() if owner.script else {"kind": "ok"}
                try:
                    self._answer(body, step)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout test)
                finally:
                    rec["served_s"] = time.monotonic() - started  # request read to last byte written

            def _answer(self, body: dict[str, Any], step: dict[str, Any]) -> None:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                if step.get("delay"):
                    time.sleep(step["delay"])
                if step["kind"] == "status":
                    headers = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else {}
                    return self._json(step["status"], {"error": {"message": step.get("message", "try again later"),
                                                                 "type": "server_error"}}, headers)
                if step["kind"] == "malformed":
                    content = '{"summary": "Torque is high", "evidence": ["Torque [Nm]"'  # cut off
                else:
                    facts = facts_from(body["messages"])
                    answer = unfaithful_answer(facts) if step["kind"] == "unfaithful" else faithful_answer(facts)
                    content = json.dumps(answer)
                usage = {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in body["messages"]),
                         "completion_tokens": len(content.split()), "total_tokens": 0}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                model = body.get("model", "loopback")
                if not body.get("stream"):
                    return self._json(200, {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
                                            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}], "usage": usage})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                pieces = [content[i:i + 12] for i in range(0, len(content), 12)]
                for i, piece in enumerate(pieces):
                    if step["kind"] == "stream_error" and i == 3:  # the server fails mid-answer
                        self._event({"error": {"message": "model crashed", "type": "server_error"}})
                        self.close_connection = True
                        return
                    self._chunk({"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0 else
                                 {"content": piece}, "finish_reason": None}, model)
                    if step.get("token_delay"):
                        time.sleep(step["token_delay"])
                self._chunk({"index": 0, "delta": {}, "finish_reason": "stop"}, model)
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event({"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "created": int(time.time()),
                                 "model": model, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _chunk(self, choice: dict[str, Any], model: str) -> None:
                self._event({"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "created": int(time.time()),
                             "model": model, "choices": [choice]})

            def _event(self, data: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

            def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="loopback-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> LoopbackOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def then(self, *steps: dict[str, Any]) -> LoopbackOpenAI:
        """Script the next requests' answers (after them: faithful answers)."""
        with self.lock:
            self.script.clear()
            self.script.extend(steps)
            self.requests.clear()
        return self
