"""Generation jobs against llama.cpp's server, run in this process (the Celery side is in
test_generation_e2e.py): samples and what they record, pairs by the import's rule, resuming, failures through
the real proxy, refused requests, cancelling a running job."""

from __future__ import annotations

import threading
import time
from itertools import combinations

import pytest
from django.db import connection

from annotate.models import Pair, Response
from generation.models import GenerationJob
from generation.services.jobs import (
    generation_job_cancel,
    generation_job_create,
    generation_job_execute,
    generation_job_rerun,
)
from tests.factories import ProjectFactory, PromptFactory, SystemFactory


def _run(job: GenerationJob) -> GenerationJob:
    generation_job_execute(job_id=job.pk, worker="test")
    job.refresh_from_db()
    return job


def _project_with_prompts(count: int, **prompt_values):
    project = ProjectFactory()
    PromptFactory.create_batch(count, project=project, **prompt_values)
    return project


@pytest.mark.django_db
def test_a_job_stores_each_sample_with_how_it_was_made_and_pairs_them_across_systems(llama_server):
    project = _project_with_prompts(2)
    cool = SystemFactory(
        project=project, name="cool", base_url=llama_server.base_url, temperature=0.2, seed=3
    )
    hot = SystemFactory(
        project=project, name="hot", base_url=llama_server.base_url, temperature=1.3, top_p=0.8, max_tokens=3
    )
    job = generation_job_create(
        project=project, systems=[cool, hot], samples=2, pairing={"cross_system_only": True}
    )
    job = _run(job)
    assert job.status == "succeeded", job.error
    assert (job.generated, job.skipped, job.failed, job.total, job.progress) == (8, 0, 0, 8, 1.0)
    responses = list(Response.objects.filter(prompt__project=project))
    assert len(responses) == 8 and {r.system for r in responses} == {"cool", "hot"}
    for response in responses:
        made = response.metadata["generation"]
        assert made["job"] == job.pk and made["finish_reason"] in {"stop", "length"}
        assert response.metadata["truncated"] == (made["finish_reason"] == "length")
        assert made["completion_tokens"] > 0
    hot_made = [r.metadata["generation"] for r in responses if r.system == "hot"]
    assert {(m["temperature"], m["top_p"], m["max_tokens"]) for m in hot_made} == {(1.3, 0.8, 3)}
    assert sorted(m["seed"] for r in responses if r.system == "cool" for m in [r.metadata["generation"]]) == [
        3,
        3,
        4,
        4,
    ]
    # Cross-system only: 2 × 2 couples per prompt, none within one system.
    pairs = list(Pair.objects.filter(project=project).select_related("response_a", "response_b"))
    assert job.pairs_created == len(pairs) == 8
    assert all(pair.response_a.system != pair.response_b.system for pair in pairs)
    assert all(pair.response_a.prompt_id == pair.prompt_id == pair.response_b.prompt_id for pair in pairs)
    usage = job.usage
    assert set(usage) == {"cool", "hot"} and usage["hot"]["responses"] == 4
    assert usage["hot"]["completion_tokens"] <= 12 and usage["hot"]["truncated"] >= 1
    assert usage["cool"]["prompt_tokens"] > 0


@pytest.mark.django_db
def test_random_pairing_draws_pairs_per_prompt_with_the_seed_like_an_import(llama_server):
    project = _project_with_prompts(2)
    system = SystemFactory(project=project, base_url=llama_server.base_url, max_tokens=3, max_concurrency=4)
    job = _run(
        generation_job_create(
            project=project,
            systems=[system],
            samples=4,
            pairing={"pairing": "random", "pairs_per_prompt": 2, "seed": 9},
        )
    )
    assert job.status == "succeeded" and job.pairs_created == 4
    for prompt in project.prompts.all():
        assert Pair.objects.filter(prompt=prompt).count() == 2


@pytest.mark.django_db
def test_a_job_run_again_asks_only_for_what_is_not_stored(fault_proxy):
    project = _project_with_prompts(2)
    system = SystemFactory(project=project, base_url=fault_proxy.base_url, max_tokens=3)
    first = _run(generation_job_create(project=project, systems=[system], samples=1))
    assert first.status == "succeeded" and first.generated == 2 and first.pairs_created == 0
    assert fault_proxy.forwarded == 2
    more = _run(generation_job_create(project=project, systems=[system], samples=2))
    assert (more.status, more.skipped, more.generated) == ("succeeded", 2, 2)
    assert fault_proxy.forwarded == 4  # only sample 1 of each prompt was asked for
    assert more.pairs_created == 2 and Response.objects.filter(prompt__project=project).count() == 4


@pytest.mark.django_db
def test_a_changed_system_makes_new_samples(llama_server):
    project = _project_with_prompts(1)
    system = SystemFactory(project=project, base_url=llama_server.base_url, max_tokens=3)
    _run(generation_job_create(project=project, systems=[system], samples=1))
    system.temperature = 0.1
    system.save()
    again = _run(generation_job_create(project=project, systems=[system], samples=1))
    assert (again.skipped, again.generated) == (0, 1)


@pytest.mark.django_db
def test_a_429_with_retry_after_ends_in_a_retry_counted_on_the_job(fault_proxy):
    project = _project_with_prompts(1)
    system = SystemFactory(project=project, base_url=fault_proxy.base_url, max_tokens=3)
    fault_proxy.script(("status", 429, {"Retry-After": "1"}))
    job = _run(generation_job_create(project=project, systems=[system], samples=2))
    assert (job.status, job.generated, job.retries, job.pairs_created) == ("succeeded", 2, 1, 1)


@pytest.mark.django_db
def test_an_endpoint_that_stays_down_fails_the_job_saying_why_and_a_rerun_goes_on(fault_proxy):
    project = _project_with_prompts(3)
    system = SystemFactory(
        project=project,
        name="flaky",
        base_url=fault_proxy.base_url,
        max_tokens=3,
        max_concurrency=1,
        max_retries=1,
    )
    fault_proxy.script(("forward",), ("status", 500), ("status", 500))
    job = _run(generation_job_create(project=project, systems=[system], samples=1))
    assert job.status == "failed"
    assert "system 'flaky'" in job.error and "answered 500, after 1 retries" in job.error
    assert "run it again" in job.error and 1 <= job.generated < 3
    again = _run(generation_job_rerun(job=job))
    assert again.status == "succeeded" and again.skipped == job.generated
    assert again.generated + again.skipped == 3


@pytest.mark.django_db
def test_a_stopped_server_fails_the_job_with_connection_refused(llama_server):
    from tests.generation.llama import free_port

    project = _project_with_prompts(1)
    system = SystemFactory(project=project, base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    job = _run(generation_job_create(project=project, systems=[system], samples=1))
    assert job.status == "failed" and "cannot connect to" in job.error


@pytest.mark.django_db
def test_a_refused_request_is_recorded_and_the_job_goes_on(fault_proxy):
    project = _project_with_prompts(2)
    system = SystemFactory(project=project, base_url=fault_proxy.base_url, max_tokens=3, max_concurrency=1)
    fault_proxy.script(("status", 422))
    job = _run(generation_job_create(project=project, systems=[system], samples=1))
    assert (job.status, job.failed, job.generated) == ("succeeded", 1, 1)
    assert "refused the request (422" in job.errors[0]


@pytest.mark.django_db
def test_a_conversation_prompt_is_sent_as_its_message_list(fault_proxy):
    turns = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Count to 3."},
    ]
    project = ProjectFactory()
    PromptFactory(project=project, content="Count to 3.", messages=turns)
    system = SystemFactory(
        project=project, base_url=fault_proxy.base_url, max_tokens=3, system_prompt="Be brief."
    )
    assert _run(generation_job_create(project=project, systems=[system], samples=1)).status == "succeeded"
    assert fault_proxy.seen[-1]["body"]["messages"] == [{"role": "system", "content": "Be brief."}, *turns]


@pytest.mark.django_db(transaction=True)
def test_a_running_job_stops_when_cancelled_and_keeps_what_it_stored(fault_proxy):
    project = _project_with_prompts(6)
    system = SystemFactory(project=project, base_url=fault_proxy.base_url, max_tokens=3, max_concurrency=1)
    fault_proxy.script(*[("hang", 0.7)] * 6)
    job = generation_job_create(project=project, systems=[system], samples=1)

    def work() -> None:
        try:
            generation_job_execute(job_id=job.pk, worker="test")
        finally:
            connection.close()

    runner = threading.Thread(target=work)
    runner.start()
    deadline = time.monotonic() + 30
    while (
        not GenerationJob.objects.filter(pk=job.pk, generated__gte=1).exists() and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    generation_job_cancel(job=GenerationJob.objects.get(pk=job.pk))
    runner.join(timeout=60)
    job.refresh_from_db()
    assert job.status == "cancelled" and 1 <= job.generated < 6
    assert Response.objects.filter(prompt__project=project).count() == job.generated
    assert not Pair.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_it_refuses_a_choice_that_would_make_too_many_pairs_per_prompt(settings):
    settings.IMPORT_MAX_PAIRS_PER_PROMPT = 10
    project = _project_with_prompts(1)
    system = SystemFactory(project=project)
    from palate.errors import ApplicationError

    with pytest.raises(ApplicationError, match="would make 15 pairs"):
        generation_job_create(project=project, systems=[system], samples=6)
    assert len(list(combinations(range(6), 2))) == 15
    job = generation_job_create(
        project=project, systems=[system], samples=6, pairing={"pairing": "random", "pairs_per_prompt": 5}
    )
    assert job.total == 6


@pytest.mark.django_db
def test_prompts_without_a_systems_responses_are_chosen_by_that_name():
    project = _project_with_prompts(3)
    answered = project.prompts.first()
    Response.objects.create(prompt=answered, external_id="r", system="gpt", content="x", fingerprint="0" * 40)
    job = generation_job_create(
        project=project,
        systems=[SystemFactory(project=project)],
        samples=1,
        scope="without_system",
        scope_value="gpt",
    )
    assert answered.pk not in job.prompt_ids and len(job.prompt_ids) == 2
