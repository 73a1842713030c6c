"""People in the browser: a lead invites someone by email or makes them an account with a one-time
set-password link (Django's password reset machinery, read here from the test mail outbox), everyone changes
or resets their own password, and removing a member asks first."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from annotate.models import Assignment, Membership, Project
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plum orchard seventeen kites"
LINK = re.compile(r"https?://[^\s\"<]+/account/password-reset/[^\s\"<]+/")


@pytest.fixture
def project() -> Project:
    return ProjectFactory(name="Summaries")


@pytest.fixture
def lead(project):
    return MembershipFactory(project=project, role=Membership.Role.LEAD, user__username="leader").user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def choose_password(link: str, password: str = NEW_PASSWORD) -> Client:
    """Follows a set-password link as its recipient would, in a browser with no session."""
    client = Client()
    page = client.get(link, follow=True)
    assert "Choose your password" in page.content.decode(), page.content.decode()[:1500]
    done = client.post(
        page.redirect_chain[-1][0], {"new_password1": password, "new_password2": password}, follow=True
    )
    assert "Password set" in done.content.decode()
    return client


def logs_in(username: str, password: str = NEW_PASSWORD) -> bool:
    response = Client().post("/login/", {"username": username, "password": password})
    return response.status_code == 302


def test_an_invitation_by_email_ends_with_the_newcomer_logged_in(project, lead):
    response = logged_in(lead).post(
        f"/projects/{project.slug}/members/invite/", {"email": "maria@example.org", "role": "annotator"}
    )

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    user = get_user_model().objects.get(email="maria@example.org")
    assert (user.username, user.has_usable_password()) == ("maria", False)
    assert Membership.objects.get(project=project, user=user).role == "annotator"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["maria@example.org"]
    assert mail.outbox[0].subject == "You are invited to Summaries on Palate"
    link = LINK.search(mail.outbox[0].body).group(0)
    assert link in unescape(response.content.decode())  # the lead sees it too, to pass on another way

    choose_password(link)

    assert logs_in("maria")
    reused = Client().get(link, follow=True)
    assert "This link no longer works" in reused.content.decode()


def test_an_account_without_an_address_gets_its_link_on_the_page(project, lead):
    response = logged_in(lead).post(
        f"/projects/{project.slug}/members/invite/", {"username": "sam", "role": "engineer"}
    )

    assert mail.outbox == []
    link = LINK.search(unescape(response.content.decode())).group(0)
    choose_password(link)
    assert logs_in("sam")
    assert Membership.objects.get(project=project, user__username="sam").role == "engineer"


def test_an_address_that_has_an_account_adds_that_account_without_a_link(project, lead):
    existing = UserFactory(username="ann", email="Ann@Example.org")

    response = logged_in(lead).post(
        f"/projects/{project.slug}/members/invite/",
        {"email": "ann@example.org", "role": "annotator"},
        follow=True,
    )

    assert "ann already has an account with that address" in unescape(response.content.decode())
    assert Membership.objects.filter(project=project, user=existing).exists()
    assert mail.outbox == [] and not LINK.search(response.content.decode())
    assert get_user_model().objects.filter(email__iexact="ann@example.org").count() == 1


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "not-an-address"}, "'not-an-address' is not an email address"),
        ({"email": "", "username": ""}, "give an email address, a username or both"),
        ({"username": "leader"}, "a user named 'leader' exists: add them by username instead"),
        ({"username": "two words"}, "username: Enter a valid username."),
        ({"username": "newbie", "role": "boss"}, "role must be one of annotator, lead, engineer, got 'boss'"),
    ],
)
def test_a_bad_invitation_says_why_and_makes_nothing(project, lead, form, message):
    users_before = get_user_model().objects.count()

    response = logged_in(lead).post(
        f"/projects/{project.slug}/members/invite/", {"role": "annotator", **form}
    )

    assert message in unescape(response.content.decode())
    assert get_user_model().objects.count() == users_before and mail.outbox == []


@pytest.mark.parametrize("role", ["annotator", "engineer", "outsider"])
def test_only_leads_invite(project, role):
    user = (
        MembershipFactory(role=Membership.Role.LEAD).user
        if role == "outsider"
        else MembershipFactory(project=project, role=role).user
    )

    response = logged_in(user).post(
        f"/projects/{project.slug}/members/invite/", {"email": "x@example.org", "role": "lead"}
    )

    assert response.status_code in (403, 404)
    assert not get_user_model().objects.filter(email="x@example.org").exists() and mail.outbox == []


def test_a_site_admin_invites_too(project):
    admin = UserFactory(is_staff=True, is_superuser=True)

    response = logged_in(admin).post(
        f"/projects/{project.slug}/members/invite/", {"email": "lee@example.org", "role": "lead"}
    )

    assert response.status_code == 200 and len(mail.outbox) == 1


def test_removing_a_member_asks_first_and_says_what_happens(project, lead):
    member = MembershipFactory(project=project, role="annotator", user__username="bea")
    pairs = [PairFactory(prompt__project=project) for _ in range(3)]
    for pair in pairs[:2]:
        JudgmentFactory(pair=pair, annotator=member.user)
    Assignment.objects.create(
        project=project, pair=pairs[2], annotator=member.user, expires_at="2099-01-01T00:00:00Z"
    )
    client = logged_in(lead)

    asked = client.get(f"/projects/{project.slug}/members/bea/remove/")

    text = unescape(asked.content.decode())
    assert "Remove bea from Summaries?" in text
    assert "Their 2 judgments stay in the project's data" in text
    assert "The 1 pair they hold now goes back" in text
    assert Membership.objects.filter(pk=member.pk).exists()
    assert (
        f'href="/projects/{project.slug}/members/bea/remove/"'
        in client.get(f"/projects/{project.slug}/members/").content.decode()
    )

    removed = client.post(f"/projects/{project.slug}/members/bea/remove/")

    assert removed.status_code == 302 and not Membership.objects.filter(pk=member.pk).exists()


@pytest.mark.parametrize("role", ["annotator", "engineer"])
def test_the_removal_question_is_for_leads_only(project, role):
    MembershipFactory(project=project, role="annotator", user__username="bea")
    user = MembershipFactory(project=project, role=role).user

    assert logged_in(user).get(f"/projects/{project.slug}/members/bea/remove/").status_code == 403


def test_anyone_changes_their_own_password():
    user = UserFactory(username="cal")
    client = logged_in(user)

    assert "Change your password" in client.get("/account/password/").content.decode()
    wrong = client.post(
        "/account/password/",
        {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert "Your old password was entered incorrectly" in unescape(wrong.content.decode())
    done = client.post(
        "/account/password/",
        {
            "old_password": "correct horse battery staple",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
        follow=True,
    )

    assert "Password changed" in done.content.decode()
    assert logs_in("cal")


def test_a_forgotten_password_is_reset_through_the_emailed_link():
    UserFactory(username="dee", email="dee@example.org")
    client = Client()
    assert 'href="/account/password-reset/"' in client.get("/login/").content.decode()

    sent = client.post("/account/password-reset/", {"email": "dee@example.org"}, follow=True)

    assert "Check your email" in sent.content.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == "Your Palate password"
    choose_password(LINK.search(mail.outbox[0].body).group(0))
    assert logs_in("dee")
    assert not logs_in("dee", "correct horse battery staple")


def test_an_unknown_address_gets_the_same_answer_and_no_email():
    sent = Client().post("/account/password-reset/", {"email": "nobody@example.org"}, follow=True)

    assert "Check your email" in sent.content.decode() and mail.outbox == []


def test_inviting_again_someone_who_never_chose_a_password_sends_a_new_link(project, lead):
    client = logged_in(lead)
    client.post(
        f"/projects/{project.slug}/members/invite/", {"email": "eve@example.org", "role": "annotator"}
    )
    first = LINK.search(mail.outbox[0].body).group(0)

    client.post(f"/projects/{project.slug}/members/invite/", {"email": "eve@example.org", "role": "lead"})

    assert len(mail.outbox) == 2 and get_user_model().objects.filter(email="eve@example.org").count() == 1
    assert Membership.objects.get(project=project, user__username="eve").role == "lead"
    choose_password(LINK.search(mail.outbox[1].body).group(0))
    assert logs_in("eve")
    assert "This link no longer works" in Client().get(first, follow=True).content.decode()
    client.post(
        f"/projects/{project.slug}/members/invite/", {"email": "eve@example.org", "role": "annotator"}
    )
    assert len(mail.outbox) == 2  # once they have a password, an invitation only adds them
