"""Factories shared by the whole suite."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from annotate.models import Judgment, Membership, Pair, Project, Prompt, Response
from generation.models import System


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda number: f"user{number}")
    password = factory.django.Password("correct horse battery staple")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda number: f"Project {number}")
    slug = factory.Sequence(lambda number: f"project-{number}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = Membership.Role.ANNOTATOR


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    external_id = factory.Sequence(lambda number: f"prompt-{number}")
    content = factory.Sequence(lambda number: f"Question number {number}?")
    fingerprint = factory.Sequence(lambda number: f"{number:040d}")


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    prompt = factory.SubFactory(PromptFactory)
    external_id = factory.Sequence(lambda number: f"response-{number}")
    system = factory.Iterator(["alpha", "beta", "gamma"])
    content = factory.Sequence(lambda number: f"Answer number {number}.")
    fingerprint = factory.Sequence(lambda number: f"{number:040d}")


class PairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pair

    prompt = factory.SubFactory(PromptFactory)
    project = factory.SelfAttribute("prompt.project")
    response_a = factory.SubFactory(ResponseFactory, prompt=factory.SelfAttribute("..prompt"))
    response_b = factory.SubFactory(ResponseFactory, prompt=factory.SelfAttribute("..prompt"))


class JudgmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Judgment

    pair = factory.SubFactory(PairFactory)
    annotator = factory.SubFactory(UserFactory)
    choice = "a"


class SystemFactory(factory.django.DjangoModelFactory):
    """A model endpoint; tests point ``base_url`` at their llama.cpp server (tests/generation/conftest.py)."""

    class Meta:
        model = System

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda number: f"system-{number}")
    base_url = "http://127.0.0.1:9/v1"
    model = "smollm2"
    temperature = 0.7
    top_p = 0.95
    max_tokens = 12
    seed = 1
    max_concurrency = 2
    timeout_seconds = 30.0
    max_retries = 2
