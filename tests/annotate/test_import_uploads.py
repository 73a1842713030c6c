"""Imports put straight into the object store through a signed link (annotate/services/import_uploads.py),
against a real S3-compatible server (moto on loopback)."""

from __future__ import annotations

import pytest
import requests
from rest_framework.test import APIClient

from annotate.models import ImportJob, Membership, Project
from annotate.services.imports import import_job_run
from tests.annotate.import_files import candidates_row, jsonl
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db

ROWS = jsonl(candidates_row(1, 3), candidates_row(2, 2))


@pytest.fixture
def project() -> Project:
    return ProjectFactory()


def test_in_an_object_store_a_file_put_to_a_signed_link_is_imported_by_its_ticket_once(
    project, enqueued, s3_stores, django_capture_on_commit_callbacks
):
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    client = APIClient()
    client.force_authenticate(lead)
    content = ROWS
    base = f"/api/projects/{project.pk}/imports/"

    link = client.post(f"{base}upload-url/", {"filename": "big.jsonl", "size": len(content)}, format="json")
    assert link.status_code == 201, link.content
    early = client.post(f"{base}from-upload/", {"upload": link.json()["upload"]}, format="json")
    answer = requests.put(link.json()["url"], data=content, timeout=10)
    assert answer.status_code == 200 and early.status_code == 400  # nothing was there yet
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"{base}from-upload/", {"upload": link.json()["upload"], "pairing": "random", "pairs_per_prompt": 1},
            format="json",
        )  # fmt: skip
    assert started.status_code == 202, started.content
    job = ImportJob.objects.get(pk=started.json()["id"])
    assert (job.filename, job.bytes_total, enqueued.job_ids) == ("big.jsonl", len(content), [job.pk])
    again = client.post(f"{base}from-upload/", {"upload": link.json()["upload"]}, format="json")
    assert again.status_code == 409

    import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED and job.counts["pairs_created"] == 2
    assert s3_stores.keys() == []
    other = ProjectFactory()
    MembershipFactory(project=other, user=lead, role=Membership.Role.LEAD)
    stolen = client.post(f"/api/projects/{other.pk}/imports/from-upload/", {"upload": link.json()["upload"]}, format="json")  # fmt: skip
    assert stolen.status_code == 400 and stolen.json()["error"]["fields"] == {
        "upload": ["unknown or expired ticket"]
    }


def test_a_link_is_refused_for_a_file_over_the_limit_or_of_no_known_format(project, s3_stores, settings):
    settings.IMPORT_MAX_FILE_BYTES = 1000
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    client = APIClient()
    client.force_authenticate(lead)
    base = f"/api/projects/{project.pk}/imports/upload-url/"

    large = client.post(base, {"filename": "a.jsonl", "size": 1001}, format="json")
    unknown = client.post(base, {"filename": "a.txt", "size": 10}, format="json")

    assert large.status_code == 400 and "over the import limit" in large.json()["error"]["message"]
    assert unknown.status_code == 400 and "cannot tell the format" in unknown.json()["error"]["message"]
