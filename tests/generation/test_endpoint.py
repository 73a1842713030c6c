"""One endpoint through the openai client, against llama.cpp's server (tests/generation/conftest.py): the
answer and its token counts, truncation, seeds, the key, and each failure mode, produced by the real proxy in
front of the server or by a port nobody listens on, ending in a retry or a clear error."""

from __future__ import annotations

import itertools
import time

import pytest

from generation.endpoint import EndpointClient, EndpointDown, EndpointSpec, RequestRefused, conversation
from tests.generation.llama import free_port


def _spec(base_url: str, **changes) -> EndpointSpec:
    values = {
        "name": "smol", "base_url": base_url, "model": "smollm2", "temperature": 0.8, "top_p": 0.95,
        "max_tokens": 8, "seed": 1, "system_prompt": "", "api_key_env": "", "max_concurrency": 2,
        "timeout_seconds": 30.0, "max_retries": 2,
    }  # fmt: skip
    return EndpointSpec(**{**values, **changes})


def _complete(base_url: str, prompt="Name a colour.", **changes):
    client = EndpointClient(_spec(base_url, **changes))
    try:
        return client, client.complete(prompt)
    finally:
        client.close()


def test_an_answer_comes_with_its_finish_reason_and_token_counts(llama_server):
    _, completion = _complete(llama_server.base_url, max_tokens=6)
    assert completion.content.strip()
    assert completion.prompt_tokens > 0 and 0 < completion.completion_tokens <= 6
    assert completion.finish_reason in {"stop", "length"}


def test_a_generation_cut_at_max_tokens_is_marked_truncated(llama_server):
    _, completion = _complete(llama_server.base_url, "Write a long story about a river.", max_tokens=2)
    assert completion.finish_reason == "length" and completion.truncated
    assert completion.completion_tokens == 2


def test_the_same_seed_gives_the_same_sample(llama_server):
    client = EndpointClient(_spec(llama_server.base_url, temperature=1.0, seed=42, max_tokens=10))
    try:
        first, again = (
            client.complete("Say something.", sample=3),
            client.complete("Say something.", sample=3),
        )
    finally:
        client.close()
    assert first.content == again.content


def test_a_429_is_retried_after_the_seconds_its_retry_after_says(fault_proxy):
    fault_proxy.script(("status", 429, {"Retry-After": "2"}))
    started = time.monotonic()
    client, completion = _complete(fault_proxy.base_url)
    assert completion.content.strip()
    assert time.monotonic() - started >= 2.0
    assert [done for _, _, done in fault_proxy.requests] == ["429", "forward"]
    assert client.requests_sent == 2


def test_5xx_answers_are_retried_with_backoff(fault_proxy):
    fault_proxy.script(("status", 500), ("status", 503))
    client, completion = _complete(fault_proxy.base_url)
    assert completion.content.strip() and client.requests_sent == 3
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(fault_proxy.requests)]
    assert all(gap >= 0.3 for gap in gaps)  # the client's back-off, jitter included, waits at least this


def test_a_request_that_hangs_past_the_timeout_is_sent_again(fault_proxy):
    # The first request is held past the client's time-out (then forwarded, after the retry is answered).
    fault_proxy.script(("hang", 15))
    client, completion = _complete(fault_proxy.base_url, timeout_seconds=6, max_tokens=2)
    assert completion.content.strip() and client.requests_sent >= 2
    assert [done for _, _, done in fault_proxy.requests][:2] == ["hang", "forward"]


def test_an_endpoint_that_keeps_failing_is_a_clear_error_after_the_retries(fault_proxy):
    fault_proxy.script(*[("status", 502)] * 3)
    with pytest.raises(EndpointDown, match=r"system 'smol': .* answered 502, after 2 retries"):
        _complete(fault_proxy.base_url)
    assert len(fault_proxy.requests) == 3


def test_a_refused_connection_is_a_clear_error(llama_server):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointDown, match=r"cannot connect to http://127\.0\.0\.1:\d+/v1"):
        _complete(url, max_retries=1)


def test_a_bad_request_is_refused_at_once_without_retries(fault_proxy):
    fault_proxy.script(("status", 400))
    with pytest.raises(RequestRefused, match="refused the request"):
        _complete(fault_proxy.base_url)
    assert len(fault_proxy.requests) == 1


def test_the_key_comes_from_the_named_variable_and_a_missing_one_is_named(fault_proxy, monkeypatch):
    monkeypatch.delenv("PALATE_TEST_ENDPOINT_KEY", raising=False)
    with pytest.raises(EndpointDown, match="PALATE_TEST_ENDPOINT_KEY"):
        _complete(fault_proxy.base_url, api_key_env="PALATE_TEST_ENDPOINT_KEY")
    monkeypatch.setenv("PALATE_TEST_ENDPOINT_KEY", "secret-from-the-environment")
    _complete(fault_proxy.base_url, api_key_env="PALATE_TEST_ENDPOINT_KEY")
    assert fault_proxy.seen[-1]["authorization"] == "Bearer secret-from-the-environment"


def test_a_conversation_is_sent_as_its_messages_after_the_system_prompt(fault_proxy):
    turns = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a fruit."},
    ]
    _complete(fault_proxy.base_url, turns, system_prompt="Be brief.")
    body = fault_proxy.seen[-1]["body"]
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *turns]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.8, 0.95, 8, 1)


def test_a_conversation_with_its_own_system_message_keeps_it():
    spec = _spec("http://127.0.0.1:9/v1", system_prompt="Be brief.")
    own = [{"role": "system", "content": "Be long."}, {"role": "user", "content": "Hi."}]
    assert conversation(spec, own) == own
