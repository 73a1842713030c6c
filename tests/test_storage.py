"""The file stores (palate/storage.py) on a real S3-compatible server (moto on loopback) and on local
folders: streamed writes and reads, folders, download links."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import urllib.request
from pathlib import Path

import pytest

from palate.scratch import scratch_directory, scratch_reap
from palate.storage import (
    ARTIFACTS,
    EXPORTS,
    PART_BYTES,
    UPLOADS,
    content_hash,
    store_delete,
    store_download_directory,
    store_download_url,
    store_list,
    store_local_path,
    store_read_bytes,
    store_reader,
    store_upload_directory,
    store_upload_url,
    store_write_bytes,
    store_writer,
)


def _blocks(total: int, size: int = 1 << 20) -> list[bytes]:
    return [os.urandom(min(size, total - start)) for start in range(0, total, size)]


def test_a_large_file_goes_up_in_parts_as_it_is_written_and_reads_back_as_a_stream(s3_stores):
    blocks = _blocks(2 * PART_BYTES + 12345)
    with store_writer(EXPORTS, "exports/1/train.jsonl") as writer:
        for block in blocks:
            writer.write(block)
        assert s3_stores.store.unfinished_uploads(s3_stores.bucket)  # a multipart upload, under way
    whole = b"".join(blocks)

    assert (writer.size, writer.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert s3_stores.keys() == ["exports/1/train.jsonl"]
    assert s3_stores.store.unfinished_uploads(s3_stores.bucket) == []
    with store_reader(EXPORTS, "exports/1/train.jsonl") as stream:
        first = stream.read(1000)
        assert first == whole[:1000] and first + stream.read() == whole


def test_a_file_whose_writing_fails_leaves_nothing_in_the_store(s3_stores):
    with pytest.raises(RuntimeError), store_writer(EXPORTS, "exports/2/train.jsonl") as writer:
        for block in _blocks(PART_BYTES + 1):
            writer.write(block)
        raise RuntimeError("the export failed")
    with pytest.raises(RuntimeError), store_writer(EXPORTS, "exports/2/small.json") as writer:
        writer.write(b"{}")
        raise RuntimeError("the export failed")

    assert s3_stores.keys() == [] and s3_stores.store.unfinished_uploads(s3_stores.bucket) == []


def test_a_part_the_store_refuses_fails_the_file_naming_it_and_leaves_no_upload_behind(s3_stores):
    client = s3_stores.store.client()
    with (
        pytest.raises(OSError, match=r"the object store did not take team-a/exports/4/train\.jsonl: "),
        store_writer(EXPORTS, "exports/4/train.jsonl") as writer,
    ):
        writer.write(os.urandom(PART_BYTES))  # the first part goes up
        (upload,) = client.list_multipart_uploads(Bucket=s3_stores.bucket)["Uploads"]
        client.abort_multipart_upload(Bucket=s3_stores.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for block in _blocks(5 * PART_BYTES):  # the store refuses these parts
            writer.write(block)

    assert s3_stores.keys() == [] and s3_stores.store.unfinished_uploads(s3_stores.bucket) == []


def test_a_long_file_holds_a_few_parts_in_memory_whatever_its_size(s3_stores):
    blocks = _blocks(12 * PART_BYTES + 77, size=3 * 1024 * 1024 + 1)  # blocks that straddle parts
    store_write_bytes(EXPORTS, "exports/5/README.md", b"#")  # botocore loads its models once, first
    tracemalloc.start()
    try:
        with store_writer(EXPORTS, "exports/5/train.jsonl") as writer:
            for block in blocks:
                writer.write(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole = b"".join(blocks)

    assert peak < (writer.target.IN_FLIGHT + 2) * PART_BYTES
    assert store_read_bytes(EXPORTS, "exports/5/train.jsonl") == whole
    assert writer.sha256 == hashlib.sha256(whole).hexdigest()


def test_a_folder_is_removed_whole_with_its_unfinished_uploads_and_nothing_beside_it(s3_stores):
    store_write_bytes(EXPORTS, "exports/3/a.jsonl", b"a")
    store_write_bytes(EXPORTS, "exports/3/hf/train/state.json", b"{}")
    store_write_bytes(EXPORTS, "exports/30/a.jsonl", b"kept")
    client = s3_stores.store.client()
    client.create_multipart_upload(Bucket=s3_stores.bucket, Key="team-a/exports/3/cut-short.parquet")

    assert store_list(EXPORTS, "exports/3") == ["a.jsonl", "hf/train/state.json"]
    store_delete(EXPORTS, "exports/3/")

    assert s3_stores.keys() == ["exports/30/a.jsonl"]
    assert s3_stores.store.unfinished_uploads(s3_stores.bucket) == []


@pytest.mark.parametrize("code", ["NotImplemented", "AccessDenied"])
def test_a_folder_is_removed_from_a_store_that_cannot_list_unfinished_uploads(s3_stores, code):
    """s3rver and some gateways answer ListMultipartUploads with NotImplemented: the objects still go, the
    unfinished uploads are left to the store's lifecycle rules. Any other refusal is an error."""
    from botocore.exceptions import ClientError

    from palate.storage import store

    store_write_bytes(EXPORTS, "exports/8/a.jsonl", b"a")

    def refuse(**_):
        from botocore.awsrequest import AWSResponse

        reply = AWSResponse("http://store/", 501, {}, None)
        return reply, {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 501}}

    events = store(EXPORTS).bucket.meta.client.meta.events
    events.register("before-call.s3.ListMultipartUploads", refuse)
    try:
        if code == "NotImplemented":
            store_delete(EXPORTS, "exports/8/")
        else:
            with pytest.raises(ClientError, match=code):
                store_delete(EXPORTS, "exports/8/")
    finally:
        events.unregister("before-call.s3.ListMultipartUploads", refuse)
    assert s3_stores.keys() == []


def test_a_missing_file_is_file_not_found(s3_stores):
    with pytest.raises(FileNotFoundError), store_reader(UPLOADS, "imports/none.jsonl"):
        pass


def test_a_download_link_fetches_the_file_from_the_store_under_its_name_and_only_for_a_while(
    s3_stores, settings
):
    settings.STORAGE_S3_URL_SECONDS = 60
    store_write_bytes(EXPORTS, "exports/4/train.jsonl", b'{"chosen": "a"}\n')

    link = store_download_url(
        EXPORTS,
        "exports/4/train.jsonl",
        filename="demo-v1-train.jsonl",
        media_type="application/octet-stream",
    )

    assert link.startswith(s3_stores.store.endpoint_url) and "X-Amz-Expires=60" in link
    with urllib.request.urlopen(link) as answer:
        assert answer.read() == b'{"chosen": "a"}\n'
        assert answer.headers["Content-Disposition"] == 'attachment; filename="demo-v1-train.jsonl"'


def test_a_local_store_offers_no_link_and_gives_its_own_path(settings):
    store_write_bytes(EXPORTS, "exports/5/train.jsonl", b"rows")

    assert store_download_url(EXPORTS, "exports/5/train.jsonl", filename="f", media_type="x") is None
    local = store_local_path(EXPORTS, "exports/5/train.jsonl")
    assert (
        local == Path(settings.ARTIFACT_ROOT) / "exports" / "5" / "train.jsonl"
        and local.read_bytes() == b"rows"
    )


def test_a_folder_goes_up_with_its_marker_last_and_comes_back_with_the_same_hash(s3_stores, tmp_path):
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(os.urandom(3000))
    (source / "trainer_state.json").write_text("done")

    digests = store_upload_directory(ARTIFACTS, source, "runs/9/model/", last="trainer_state.json")
    copy = tmp_path / "copy"
    fetched = store_download_directory(ARTIFACTS, "runs/9/model", copy)

    assert list(digests)[-1] == "trainer_state.json"
    assert fetched == digests and content_hash(fetched) == content_hash(digests)
    assert (copy / "sub" / "weights.bin").read_bytes() == (source / "sub" / "weights.bin").read_bytes()
    assert store_read_bytes(ARTIFACTS, "runs/9/model/config.json") == b"{}"


def test_a_scratch_folder_goes_at_the_end_of_its_block_and_a_dead_process_s_at_the_next_start(
    settings, tmp_path
):
    settings.TRAINING_SCRATCH_DIR = str(tmp_path / "scratch")
    dead = tmp_path / "scratch" / "palate-run-1-pid999999999-abc"
    (dead / "checkpoints").mkdir(parents=True)
    with scratch_directory("run-2") as folder:
        assert folder.is_dir() and not dead.exists()
        (folder / "checkpoint").write_text("x")
        alive = tmp_path / "scratch" / f"palate-run-3-pid{os.getpid()}-def"
        alive.mkdir()
    assert not folder.exists()
    assert scratch_reap() == [] and alive.exists()


def test_links_are_signed_for_the_address_clients_reach_the_store_at(s3_stores, settings):
    settings.STORAGE_S3_PUBLIC_ENDPOINT_URL = "http://store.example.org:9000"

    download = store_download_url(EXPORTS, "exports/6/train.jsonl", filename="f.jsonl", media_type="x")
    upload = store_upload_url(UPLOADS, "imports/abc-items.jsonl")

    assert download.startswith(
        f"http://store.example.org:9000/{s3_stores.bucket}/team-a/exports/6/train.jsonl?"
    )
    assert upload.startswith(
        f"http://store.example.org:9000/{s3_stores.bucket}/team-a/imports/abc-items.jsonl?"
    )
