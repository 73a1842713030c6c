"""Every failure of an import, of any kind, ends its job at once as failed with the true reason, and leaves
nothing behind: files a parser cannot take (nesting past any sane depth, a lone surrogate) included."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from annotate.models import ImportJob, Prompt
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import import_job_create, import_job_run
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

DEEP = 100_000
HOSTILE = {
    "deep.json": b"[" * DEEP + b"]" * DEEP,
    "deep_items.jsonl": b'{"prompt": "p", "responses": ' + b"[" * DEEP + b"]" * DEEP + b"}\n",
    "surrogate.jsonl": b'{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}\n',
    "surrogate.json": b'[{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}]',
    "deep_cell.csv": b'prompt,responses\np,"' + b"[" * 50_000 + b"]" * 50_000 + b'"\n',
    "surrogate_cell.csv": b'prompt,responses\np,"[""\\ud800"", ""b""]"\n',
}


@pytest.mark.parametrize("filename", sorted(HOSTILE))
def test_a_file_no_parser_can_take_fails_its_job_at_once_naming_the_reason(filename, enqueued):
    content = HOSTILE[filename]
    job = import_job_create(
        project=ProjectFactory(),
        upload=io.BytesIO(content),
        filename=filename,
        size=len(content),
        options=ImportOptions(),
        created_by=None,
    )
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED, (job.status, job.error)
    # Where and what, in the words of a row error: never an exception's own text.
    assert job.error.startswith(filename) and "malformed" in job.error, job.error
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize("filename", sorted(HOSTILE))
def test_a_small_hostile_upload_is_a_400_in_the_error_shape_not_a_500(filename):
    project = ProjectFactory()
    lead = UserFactory()
    MembershipFactory(user=lead, project=project, role="lead")
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(lead)
    upload = SimpleUploadedFile(filename, HOSTILE[filename])
    response = client.post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "import_failed" and error["fields"]["file"][0].startswith(filename)
    assert Prompt.objects.count() == 0
