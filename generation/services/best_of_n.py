"""Best-of-N sampling: N responses from a system, scored by a reward model, the best one chosen.

Generation happens in the caller's process (HTTP to the endpoint, no model loaded); scoring goes through
the scoring service (``rewardtrain.services.scoring``), which sends it to the worker: torch never loads
in the web process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from rest_framework import status

from generation.endpoint import Completion, EndpointClient, EndpointDown, Message, RequestRefused
from generation.models import System
from generation.services.systems import system_spec
from palate.errors import ApplicationError
from rewardtrain.models import RewardModel
from rewardtrain.services.scoring import reward_model_best_of_n, scoring_input_check


def samples_generate(*, system: System, prompt: str | list[Message], n: int) -> list[Completion]:
    """N completions of ``prompt`` from ``system`` (sample k with the system's seed + k), up to its
    concurrency at once. A 503 ApplicationError when the endpoint is down, 400 when it refuses the prompt."""
    spec = system_spec(system)
    try:
        client = EndpointClient(spec)
        try:
            with ThreadPoolExecutor(max_workers=min(n, spec.max_concurrency)) as pool:
                return list(pool.map(lambda sample: client.complete(prompt, sample=sample), range(n)))
        finally:
            client.close()
    except EndpointDown as error:
        raise ApplicationError(
            str(error), code="endpoint_unavailable", http_status=status.HTTP_503_SERVICE_UNAVAILABLE
        ) from error
    except RequestRefused as error:
        raise ApplicationError(str(error), code="endpoint_refused") from error


def reward_model_sample_best_of_n(
    *,
    reward_model: RewardModel,
    system: System,
    n: int,
    prompt: str | None = None,
    messages: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Generates ``n`` responses to the prompt (text) or messages (a conversation) from ``system``, scores
    them with ``reward_model`` and returns them all, in the order generated, with their scores and ranks,
    and the chosen one (the highest raw score; ties go to the earlier sample)."""
    most = min(settings.GENERATION_BEST_OF_N_MAX, settings.SCORING_MAX_RESPONSES)
    if not 1 <= n <= most:
        raise ApplicationError(f"n: from 1 to {most}", fields={"n": [f"from 1 to {most}"]})
    if system.project_id != reward_model.project_id:
        raise ApplicationError(
            "system: not of the reward model's project", fields={"system": ["another project's"]}
        )
    value = scoring_input_check(prompt=prompt, messages=messages, responses=[])
    completions = samples_generate(system=system, prompt=value, n=n)
    ranking = reward_model_best_of_n(
        reward_model=reward_model, prompt=value, responses=[completion.content for completion in completions]
    )
    scored = {row["index"]: row for row in ranking}
    samples = [
        {
            "index": index,
            "response": completion.content,
            "finish_reason": completion.finish_reason,
            "truncated": completion.truncated,
            "raw": scored[index]["raw"],
            "normalised": scored[index]["normalised"],
            "rank": scored[index]["rank"],
        }
        for index, completion in enumerate(completions)
    ]
    best = ranking[0]["index"]
    return {
        "reward_model": reward_model.pk,
        "system": system.pk,
        "samples": samples,
        "best": best,
        "chosen": samples[best],
    }
