"""A real S3-compatible server on loopback for tests: moto in server mode (``moto_server``), started as a
process of its own on a free port. Clients reach it over HTTP like any object store; nothing is patched.
``s3rver_server`` starts s3rver (a Node.js store writing to a folder) instead, for benchmarks that should not
count a Python server's CPU against the client's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# moto accepts any credentials; boto3 still wants some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "palate-test", "AWS_SECRET_ACCESS_KEY": "palate-test-secret"}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """CPU time a process of this machine has used so far (user and system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ObjectStore:
    endpoint_url: str
    pid: int = 0  # the server's process
    credentials: tuple[str, str] = (CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def environment(self) -> dict[str, str]:
        """The variables that give boto3 (and Palate's stores) this server's credentials."""
        return {"AWS_ACCESS_KEY_ID": self.credentials[0], "AWS_SECRET_ACCESS_KEY": self.credentials[1]}

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user and system)."""
        return process_cpu_seconds(self.pid)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=self.credentials[0],
            aws_secret_access_key=self.credentials[1],
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return sorted(item["Key"] for item in found)

    def unfinished_uploads(self, bucket: str) -> list[str]:
        return [
            item["Key"] for item in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        ]

    def storages(self, bucket: str, prefix: str = "") -> dict:
        """``STORAGES`` with the three file stores in ``bucket``, as the environment variables make them."""
        from django.conf import settings

        from palate.settings import s3_storage

        store = s3_storage(bucket=bucket, endpoint_url=self.endpoint_url, region=REGION, prefix=prefix)
        store["OPTIONS"].update(access_key=self.credentials[0], secret_key=self.credentials[1])
        return {**settings.STORAGES, "uploads": store, "exports": store, "artifacts": store}


@contextmanager
def _serve(command: list[str], ready_url: str) -> Iterator[subprocess.Popen]:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers: an S3 error for an anonymous request is an answer
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{Path(command[0]).name} did not start") from None
                time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def moto_server() -> Iterator[ObjectStore]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _serve(command, f"{endpoint}/moto-api/") as server:
        yield ObjectStore(endpoint, server.pid)


@contextmanager
def s3rver_server(executable: str, directory: Path) -> Iterator[ObjectStore]:
    """s3rver (``npm install s3rver@3``) on loopback, storing its objects under ``directory``; it accepts only
    its own fixed credentials."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [executable, "-d", str(directory), "-a", "127.0.0.1", "-p", str(port), "--silent"]
    with _serve(command, endpoint) as server:
        yield ObjectStore(endpoint, server.pid, credentials=("S3RVER", "S3RVER"))


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """One moto server for the test run."""
    with moto_server() as store:
        yield store


@dataclass(frozen=True)
class S3Stores:
    store: ObjectStore
    bucket: str
    prefix: str

    def keys(self, under: str = "") -> list[str]:
        """The bucket's keys under the stores' prefix (and ``under``), without that prefix."""
        root = f"{self.prefix}/"
        return [key.removeprefix(root) for key in self.store.keys(self.bucket, root + under)]


@pytest.fixture
def s3_stores(object_store, settings) -> S3Stores:
    """The uploads, exports and artifacts stores in a fresh bucket of the moto server, under a prefix."""
    import uuid

    bucket = object_store.bucket(f"palate-{uuid.uuid4().hex[:12]}")
    settings.STORAGES = object_store.storages(bucket, prefix="team-a")
    return S3Stores(object_store, bucket, "team-a")
