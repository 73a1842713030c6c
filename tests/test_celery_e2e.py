"""End to end through a real Celery worker on Redis: a large upload is imported by a job."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from annotate.models import ImportJob, Membership, Pair
from annotate.selectors_pair_pages import pair_page
from annotate.services.search_documents import search_documents_pending
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.waiting import wait_for

pytestmark = pytest.mark.celery_worker


def test_a_large_upload_is_imported_by_a_celery_worker_with_progress(
    celery_worker_process, settings, tmp_path
):
    settings.IMPORT_ASYNC_THRESHOLD_BYTES = 1_000
    project = ProjectFactory()
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    path = tmp_path / "pairs.jsonl"
    rows = [
        {
            "id": f"p{index}",
            "prompt": f"Question {index}?",
            "response_a": f"yes {index}",
            "response_b": f"no {index}",
        }
        for index in range(300)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    client = APIClient()
    client.force_authenticate(lead)
    with path.open("rb") as upload:
        response = client.post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def finished():
        body = client.get(f"/api/imports/{job_id}/").json()
        return body if body["status"] in {"succeeded", "failed"} else None

    body = wait_for(finished)
    assert body["status"] == "succeeded", body
    assert body["counts"]["pairs_created"] == 300 and body["progress"] == 1.0
    assert Pair.objects.filter(project=project).count() == 300
    assert ImportJob.objects.get(pk=job_id).stored_path == ""
    # Once the import committed, the worker also builds its search documents (a task the import queued).
    assert wait_for(lambda: search_documents_pending(project=project) == 0)
    found = pair_page(project=project, filters={}, query="question 299").rows
    assert [pair.pk for pair in found] == [
        Pair.objects.get(project=project, prompt__content="Question 299?").pk
    ]


def test_a_bad_large_upload_fails_in_the_worker_and_writes_nothing(celery_worker_process, settings, tmp_path):
    settings.IMPORT_ASYNC_THRESHOLD_BYTES = 100
    project = ProjectFactory()
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role=Membership.Role.LEAD)
    path = tmp_path / "pairs.jsonl"
    good = [
        json.dumps({"prompt": f"Q{index}", "response_a": "a", "response_b": f"b{index}"})
        for index in range(50)
    ]
    path.write_text("\n".join([*good, "{broken"]) + "\n")
    client = APIClient()
    client.force_authenticate(lead)
    with path.open("rb") as upload:
        job_id = client.post(
            f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart"
        ).json()["id"]
    body = wait_for(
        lambda: (b := client.get(f"/api/imports/{job_id}/").json())["status"] in {"succeeded", "failed"} and b
    )
    assert body["status"] == "failed"
    assert any("line 51" in error and "malformed JSON" in error for error in body["errors"])
    assert Pair.objects.filter(project=project).count() == 0
