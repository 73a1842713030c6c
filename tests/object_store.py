"""A real S3-compatible server on loopback for tests: moto in server mode (``moto_server``), started as a
process of its own on a free port. Clients reach it over HTTP like any object store; nothing is patched."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user and system)."""
        return process_cpu_seconds(self.pid)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
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
        store["OPTIONS"].update(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
        )
        return {**settings.STORAGES, "uploads": store, "exports": store, "artifacts": store}


@contextmanager
def moto_server() -> Iterator[ObjectStore]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield ObjectStore(endpoint, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)


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
