"""Chat completions from one OpenAI-compatible endpoint, through the maintained ``openai`` client. No
database here: the job service (``generation.services.jobs``) and best-of-N sampling call it from threads.

Retries are the client's own: on 408, 409, 429, 5xx, time-outs and refused connections it retries up to
``max_retries`` times with exponential back-off and jitter, waiting what a ``Retry-After`` header says
(up to two minutes). An event hook counts the requests sent, so the caller can tell how many were retries.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]


@dataclass(frozen=True)
class EndpointSpec:
    """What a request needs of a ``generation.models.System`` (a plain value, safe to hand to threads)."""

    name: str
    base_url: str
    model: str
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None
    system_prompt: str
    api_key_env: str
    max_concurrency: int
    timeout_seconds: float
    max_retries: int

    def parameters(self) -> dict[str, Any]:
        """The sampling parameters a response records."""
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class EndpointDown(Exception):
    """The endpoint cannot serve any request: unreachable, failing or overloaded after every retry, or
    refusing the key. A job stops on it."""


class RequestRefused(Exception):
    """The endpoint refused this one request (400, 413, 422: too long a prompt, a bad parameter). A job
    records it and goes on."""


@dataclass
class _Counter:
    sent: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Any) -> None:
        with self.guard:
            self.sent += 1


def conversation(spec: EndpointSpec, prompt: str | list[Message]) -> list[Message]:
    """The messages sent for a prompt: a conversation as its list of messages, a text prompt as one user
    message; the system prompt goes first unless the conversation opens with a system message of its own."""
    messages = (
        [{"role": m["role"], "content": m["content"]} for m in prompt]
        if isinstance(prompt, list)
        else [{"role": "user", "content": prompt}]
    )
    if spec.system_prompt and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": spec.system_prompt})
    return messages


class EndpointClient:
    """One client (one connection pool, ``max_concurrency`` connections) per system; thread-safe."""

    def __init__(self, spec: EndpointSpec) -> None:
        import openai

        self.spec = spec
        self.counter = _Counter()
        api_key = "none"  # the client insists on a key; servers without authentication ignore it
        if spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env, "")
            if not api_key:
                raise EndpointDown(
                    f"system '{spec.name}': the environment variable {spec.api_key_env} (its API key) is not "
                    "set on this worker"
                )
        self.http = openai.DefaultHttpxClient(
            limits=_limits(spec.max_concurrency), event_hooks={"request": [self.counter.add]}
        )
        self.client = openai.OpenAI(
            base_url=spec.base_url,
            api_key=api_key,
            timeout=spec.timeout_seconds,
            max_retries=spec.max_retries,
            http_client=self.http,
        )

    @property
    def requests_sent(self) -> int:
        return self.counter.sent

    def complete(self, prompt: str | list[Message], *, sample: int = 0) -> Completion:
        """One completion for ``prompt``; sample k is asked with the system's seed + k. Raises EndpointDown or
        RequestRefused with a message that names the system and says what happened."""
        import openai

        spec = self.spec
        extra: dict[str, Any] = {} if spec.seed is None else {"seed": spec.seed + sample}
        started = time.perf_counter()
        try:
            answer = self.client.chat.completions.create(
                model=spec.model,
                messages=conversation(spec, prompt),
                temperature=spec.temperature,
                top_p=spec.top_p,
                max_tokens=spec.max_tokens,
                **extra,
            )
        except openai.APITimeoutError as error:
            raise EndpointDown(
                f"system '{spec.name}': no answer from {spec.base_url} within {spec.timeout_seconds:g} s, "
                f"{spec.max_retries} retries included"
            ) from error
        except openai.APIConnectionError as error:
            raise EndpointDown(
                f"system '{spec.name}': cannot connect to {spec.base_url} ({_cause(error)}), "
                f"{spec.max_retries} retries included"
            ) from error
        except openai.APIStatusError as error:
            status = error.status_code
            detail = _detail(error)
            if status in (400, 413, 422):
                raise RequestRefused(
                    f"system '{spec.name}': the endpoint refused the request ({status}: {detail})"
                ) from error
            hint = " (is its API key right?)" if status in (401, 403) else ""
            retried = f", after {spec.max_retries} retries" if status == 429 or status >= 500 else ""
            raise EndpointDown(
                f"system '{spec.name}': {spec.base_url} answered {status}{retried}: {detail}{hint}"
            ) from error
        seconds = time.perf_counter() - started
        if not answer.choices:
            raise RequestRefused(f"system '{spec.name}': the endpoint answered with no choices")
        choice = answer.choices[0]
        usage = answer.usage
        return Completion(
            content=choice.message.content or "",
            finish_reason=choice.finish_reason or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            seconds=seconds,
        )

    def close(self) -> None:
        self.client.close()


def _limits(concurrency: int) -> Any:
    import httpx2

    return httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error) or error.__class__.__name__


def _detail(error: Any) -> str:
    return str(getattr(error, "message", "") or error)[:300]
