"""The platform around the app: the OpenAPI schema, what the web process imports, the deploy checks, the API
docs page working offline, and the user and membership commands."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.core.management import CommandError, call_command
from django.urls import URLPattern, URLResolver
from drf_spectacular.drainage import GENERATOR_STATS

from annotate.models import Membership
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

BASE_DIR = Path(django_settings.BASE_DIR)
NOT_IN_SCHEMA = {"/api/schema/", "/api/docs/"}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def api_routes(patterns: list, prefix: str = "/api/") -> set[str]:
    """Every route under /api/, in OpenAPI's spelling (``<int:project_id>`` becomes ``{project_id}``)."""
    routes = set()
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            routes |= api_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            routes.add(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


def run_python(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "palate.settings", **environment}
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# The schema ------------------------------------------------------------------------------------------


def test_the_openapi_schema_generates_without_warnings_and_documents_every_api_url(tmp_path):
    from palate.api_urls import urlpatterns

    GENERATOR_STATS.reset()  # warnings from schemas generated earlier in the run are not this test's
    path = tmp_path / "schema.yml"

    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(path),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )

    schema = yaml.safe_load(path.read_text())
    routes = api_routes(urlpatterns)
    assert "/api/projects/{project_id}/members/{username}/" in routes  # the walk reaches nested routes
    assert set(schema["paths"]) == routes - NOT_IN_SCHEMA


def test_every_api_operation_documents_its_errors_in_the_one_shape(tmp_path):
    GENERATOR_STATS.reset()
    path = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    schema = yaml.safe_load(path.read_text())

    operations = [
        (route, method, operation)
        for route, methods in schema["paths"].items()
        if route != "/api/auth/token/"  # logging in and out: documents its own errors
        for method, operation in methods.items()
    ]
    from accounts.api.urls import urlpatterns as accounts_urlpatterns
    from annotate.api.urls import urlpatterns
    from generation.api.urls import urlpatterns as generation_urlpatterns
    from rewardtrain.api.urls import urlpatterns as rewardtrain_urlpatterns

    implemented = sum(
        hasattr(pattern.callback.view_class, method)
        for pattern in [
            *urlpatterns,
            *rewardtrain_urlpatterns,
            *accounts_urlpatterns,
            *generation_urlpatterns,
        ]
        if pattern.name != "api-token"
        for method in ("get", "post", "patch", "put", "delete")
    )
    assert len(operations) == implemented
    for route, method, operation in operations:
        errors = {
            status: response for status, response in operation["responses"].items() if status.startswith("4")
        }
        assert {"400", "401", "403", "404"} <= set(errors), (route, method)
        for response in errors.values():
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error_body = schema["components"]["schemas"]["ErrorBody"]
    assert set(error_body["properties"]) == {"code", "message", "fields"}


# The web process -------------------------------------------------------------------------------------


def test_the_web_process_does_not_import_torch_or_transformers():
    probe = (
        "import json, sys\n"
        "import palate.wsgi\n"
        "after_wsgi = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'})\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns  # every view module the web process can serve\n"
        "after_urls = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'})\n"
        "ready = 'annotate.api.views' in sys.modules\n"
        "print(json.dumps({'ready': ready, 'wsgi': after_wsgi, 'urls': after_urls}))\n"
    )

    result = run_python("-c", probe)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ready": True, "wsgi": [], "urls": []}


def test_starting_django_leaves_the_statistics_unloaded_until_a_job_needs_them():
    # Every process registers the job kinds at start-up (workers, manage.py, each rank of a training run):
    # registering the export job must not bring scipy, which only building an export reads.
    probe = (
        "import sys, django\n"
        "django.setup()\n"
        "from palate.celery import app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'torch', 'transformers'}))\n"
    )

    result = run_python("-c", probe)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_web_process_keeps_what_it_loaded_out_of_the_garbage_collector_s_full_collections():
    probe = (
        "import gc\n"
        "before = gc.get_freeze_count()\n"
        "import palate.wsgi\n"
        "print(before, gc.get_freeze_count())\n"
    )

    result = run_python("-c", probe)

    assert result.returncode == 0, result.stderr
    before, frozen = map(int, result.stdout.split())
    # Django and every view module: about 150,000 objects.
    assert before == 0 and frozen > 50_000, (before, frozen)


def test_the_deploy_check_finds_nothing_beyond_what_the_reverse_proxy_handles():
    result = run_python(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="False",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="palate.example.org",
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output
    assert "ERRORS" not in output
    # Exactly HSTS (W004) and the HTTPS redirect (W008) are silenced: the proxy does both.
    assert "System check identified no issues (2 silenced)." in output
    assert django_settings.SILENCED_SYSTEM_CHECKS == ["security.W004", "security.W008"]


@pytest.mark.django_db
def test_the_api_docs_page_loads_nothing_from_outside(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", html, re.IGNORECASE)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    # Its one script of its own comes from the page's own address (the policy allows no inline script).
    own = [asset for asset in assets if asset.startswith("/api/docs/?script")]
    assert len(own) == 1
    for asset in set(assets) - set(own):
        assert asset.startswith(django_settings.STATIC_URL), asset
        assert finders.find(asset.removeprefix(django_settings.STATIC_URL)), (
            f"{asset} is not a static file of the app"
        )
    script = client.get(own[0].replace("&amp;", "&")).content.decode()
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", script, re.IGNORECASE)
    schema_url = re.search(r'"(/api/schema/[^"]*)"', script).group(1)
    assert client.get(schema_url).status_code == 200


# create_user -----------------------------------------------------------------------------------------

GOOD_PASSWORD = "violet-kettle-marathon-42"


def password_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "password.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.django_db
def test_create_user_reads_the_password_from_the_first_line_of_a_file(tmp_path, django_user_model):
    out = io.StringIO()

    call_command(
        "create_user",
        "ada",
        "--password-file",
        password_file(tmp_path, f"{GOOD_PASSWORD}\nignored\n"),
        stdout=out,
    )

    user = django_user_model.objects.get(username="ada")
    assert user.check_password(GOOD_PASSWORD)
    assert not (user.is_staff or user.is_superuser or user.has_perm("annotate.add_project"))
    assert out.getvalue().strip() == "created user ada"


@pytest.mark.django_db
def test_create_user_reads_the_password_from_stdin(django_user_model):
    call_command(
        "create_user",
        "ada",
        "--password-file",
        "-",
        stdin=io.StringIO(f"{GOOD_PASSWORD}\n"),
        stdout=io.StringIO(),
    )

    assert django_user_model.objects.get(username="ada").check_password(GOOD_PASSWORD)


@pytest.mark.django_db
def test_create_user_makes_site_admins_and_project_creators(tmp_path, django_user_model):
    path = password_file(tmp_path, GOOD_PASSWORD)

    call_command("create_user", "root", "--password-file", path, "--admin", stdout=io.StringIO())
    call_command(
        "create_user", "maker", "--password-file", path, "--can-create-projects", stdout=io.StringIO()
    )

    root, maker = (
        django_user_model.objects.get(username="root"),
        django_user_model.objects.get(username="maker"),
    )
    assert root.is_staff and root.is_superuser
    assert maker.has_perm("annotate.add_project")
    assert not (maker.is_staff or maker.is_superuser)


@pytest.mark.django_db
def test_create_user_sets_a_new_password_for_an_existing_user(tmp_path):
    user = UserFactory(username="ada")
    out = io.StringIO()

    call_command("create_user", "ada", "--password-file", password_file(tmp_path, GOOD_PASSWORD), stdout=out)

    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD)
    assert out.getvalue().strip() == "updated user ada"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the password file"),
        ("", "the password file is empty"),
        ("\nsecond line\n", "the password file is empty"),
        ("password", "too common"),
        ("ab1", "too short"),
    ],
)
def test_create_user_refuses_a_missing_empty_or_weak_password_file(
    tmp_path, django_user_model, content, message
):
    path = str(tmp_path / "absent.txt") if content is None else password_file(tmp_path, content)

    with pytest.raises(CommandError, match=message) as caught:
        call_command("create_user", "ada", "--password-file", path, stdout=io.StringIO())

    assert str(caught.value).startswith(path)
    assert not django_user_model.objects.filter(username="ada").exists()


# add_member ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_member_adds_a_user_with_attributes_and_a_role_change_keeps_them():
    project, user = ProjectFactory(slug="summaries"), UserFactory(username="bob")
    first, second = io.StringIO(), io.StringIO()

    call_command(
        "add_member", "summaries", "bob", "--role", "annotator", "--attribute", "locale=fr-FR", stdout=first
    )
    call_command("add_member", "summaries", "bob", "--role", "engineer", stdout=second)

    membership = Membership.objects.get(project=project, user=user)
    assert (membership.role, membership.attributes) == ("engineer", {"locale": "fr-FR"})
    assert first.getvalue().startswith("added ")
    assert second.getvalue().startswith("updated ")


@pytest.mark.django_db
def test_add_member_keeps_the_attributes_as_given(django_user_model):
    project = ProjectFactory(slug="summaries")
    UserFactory(username="bob")

    call_command(
        "add_member",
        "summaries",
        "bob",
        "--role",
        "annotator",
        "--attribute",
        "locale=fr-FR",
        "--attribute",
        "expertise = code",
    )

    assert Membership.objects.get(project=project).attributes == {"locale": "fr-FR", "expertise": "code"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("project_slug", "username", "extra", "message"),
    [
        ("nowhere", "bob", [], "no project with slug 'nowhere'"),
        ("summaries", "nobody", [], "no user named 'nobody'"),
        ("summaries", "bob", ["--attribute", "locale"], "expected KEY=VALUE"),
    ],
)
def test_add_member_refuses_an_unknown_project_or_user(project_slug, username, extra, message):
    ProjectFactory(slug="summaries")
    UserFactory(username="bob")

    with pytest.raises(CommandError, match=message):
        call_command("add_member", project_slug, username, "--role", "annotator", *extra)

    assert Membership.objects.count() == 0


@pytest.mark.django_db
def test_add_member_refuses_to_demote_the_last_lead():
    lead = MembershipFactory(project=ProjectFactory(slug="summaries"), role=Membership.Role.LEAD)

    with pytest.raises(CommandError, match="at least one lead"):
        call_command("add_member", "summaries", lead.user.username, "--role", "annotator")

    lead.refresh_from_db()
    assert lead.role == Membership.Role.LEAD
