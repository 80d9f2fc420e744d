"""LLM providers. `OpenAICompatible` talks to any server that speaks OpenAI chat completions
(OpenAI, vLLM, Ollama, llama.cpp server) through the official `openai` client.

Retries are ours, not the client's (`max_retries=0` on the client), so a cancelled job stops while
it waits: 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter,
waiting what `Retry-After` asks for when the server says; other 4xx fail at once. After the last
attempt `ProviderError` says what happened in words that never contain the API key.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OnToken = Callable[[str], None]
Sleep = Callable[[float], None]


class ProviderError(Exception):
    """The provider could not answer (after retries, or a non-retryable error)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status, self.attempts = status, attempts


@dataclass
class Completion:
    text: str
    model: str
    usage: dict[str, int] | None
    seconds: float
    attempts: int
    streamed: bool
    waits: list[float] = field(default_factory=list)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


def retry_after(headers: Any) -> float | None:
    """Seconds from a `Retry-After` (seconds or HTTP date) or `retry-after-ms` header."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class OpenAICompatible:
    name = "openai"

    def __init__(self, base_url: str | None, api_key: str | None, model: str, *, timeout_s: float = 60.0,
                 max_attempts: int = 4, backoff_s: float = 1.0, max_wait_s: float = 60.0, stream: bool = True,
                 temperature: float = 0.0) -> None:
        from openai import OpenAI

        self._key = api_key
        self.model, self.stream, self.temperature = model, stream, temperature
        self.max_attempts, self.backoff_s, self.max_wait_s = max(1, max_attempts), backoff_s, max_wait_s
        # A local server often needs no key, but the client insists on one: "not-needed" is sent then.
        self.client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout_s)

    def complete(self, messages: list[dict[str, str]], *, on_token: OnToken | None = None,
                 sleep: Sleep = time.sleep, json_mode: bool = True,
                 on_reset: Callable[[str], None] | None = None) -> Completion:
        """One answer. `on_reset("retry")` is called before an attempt that follows one which had
        already streamed tokens (those tokens are void)."""
        import openai

        waits: list[float] = []
        started = time.perf_counter()
        streamed_any = [False]

        def tokens(text: str) -> None:
            streamed_any[0] = True
            if on_token:
                on_token(text)

        for attempt in range(1, self.max_attempts + 1):
            if streamed_any[0] and on_reset:
                on_reset("retry")
            streamed_any[0] = False
            try:
                text, model, usage = self._once(messages, tokens, json_mode)
                return Completion(text=text, model=model, usage=usage, seconds=time.perf_counter() - started,
                                  attempts=attempt, streamed=self.stream, waits=waits)
            except openai.APIStatusError as e:
                retryable = e.status_code == 429 or e.status_code >= 500
                detail = re.sub(r"^Error code: \d+ - ", "", _redact(str(e.message), self._key))[:300]
                what = f"HTTP {e.status_code} from the LLM server: {detail}"
                status, wait = e.status_code, retry_after(e.response.headers if e.response is not None else None)
                if not retryable:
                    raise ProviderError(what, status=status, attempts=attempt) from None
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                kind = "timed out" if isinstance(e, openai.APITimeoutError) else "could not be reached"
                what, status, wait = f"the LLM server {kind}", None, None
            except openai.APIError as e:  # e.g. an error event in the middle of a stream
                what = f"the LLM server sent an error: {_redact(str(e.message), self._key)[:300]}"
                status, wait = None, None
            if attempt == self.max_attempts:
                raise ProviderError(f"{what} (gave up after {attempt} attempts)", status=status, attempts=attempt)
            if wait is None:
                wait = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            wait = min(wait, self.max_wait_s)
            waits.append(wait)
            sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, messages: list[dict[str, str]], on_token: OnToken | None,
              json_mode: bool) -> tuple[str, str, dict[str, int] | None]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if not self.stream:
            r = self.client.chat.completions.create(**kwargs)
            text = r.choices[0].message.content or "" if r.choices else ""
            if on_token and text:
                on_token(text)
            return text, r.model or self.model, _usage(r.usage)
        parts: list[str] = []
        usage, model = None, self.model
        stream = self.client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        with stream:
            for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or []:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        parts.append(delta)
                        if on_token:
                            on_token(delta)
        return "".join(parts), model, usage


def _usage(u: Any) -> dict[str, int] | None:
    if u is None:
        return None
    return {k: int(getattr(u, k)) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            if getattr(u, k, None) is not None}
