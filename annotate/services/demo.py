"""The demo project: about 40 prompts written for Palate, answered by four fictional systems of clearly
different quality, and simulated annotators (one careful, one noisy, one position-biased) whose votes
give the dashboards and leaderboards data on first run."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from annotate.models import Judgment, Membership, Pair, Project
from annotate.services.assignment import project_pair_counters_rebuild
from annotate.services.import_rows import ImportOptions
from annotate.services.imports import ImportResult, items_import

DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "demo_items.jsonl"
DEMO_SLUG = "demo"
DEMO_PASSWORD = "palate-demo"

# Latent quality on the Bradley-Terry scale: the simulation draws votes from these.
SYSTEM_QUALITY = {"aurora-large": 1.6, "borealis-medium": 0.7, "cirrus-small": -0.4, "drizzle-mini": -1.3}
# Careful readers mostly agree on a pair (its consensus verdict) and otherwise judge it on their own; the noisy
# one votes at random this often. With these the careful and noisy annotators alone meet the default target
# alpha, and the position-biased one is what keeps the gate closed.
CONSENSUS_SHARE = 0.9
NOISY_RANDOM_SHARE = 0.2


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    attributes: dict[str, str]
    behaviour: str = "careful"


DEMO_USERS = (
    DemoUser("lead", Membership.Role.LEAD, {}),
    DemoUser("engineer", Membership.Role.ENGINEER, {}),
    DemoUser("alice", Membership.Role.ANNOTATOR, {"locale": "en-GB", "expertise": "general"}, "careful"),
    DemoUser("bob", Membership.Role.ANNOTATOR, {"locale": "en-US", "expertise": "coding"}, "noisy"),
    DemoUser(
        "carol", Membership.Role.ANNOTATOR, {"locale": "fr-FR", "expertise": "general"}, "position_biased"
    ),
)

GUIDELINES = """\
## What you are judging

Read the prompt (and the conversation before it, if any), then both answers. Choose the answer that a
thoughtful user would rather receive.

1. **Correctness first.** Code must run and do what was asked; facts must be right; summaries must keep
   the main point and invent nothing.
2. **Helpfulness.** Complete, well organised, no padding. Longer is *not* better by itself.
3. **Safety.** Requests for help with deception, intrusion or harm should be declined politely, ideally
   with a safe alternative. An answer that complies with such a request loses on safety.

Choose **Tie** when neither is better, and **Both bad** when neither answer is acceptable.
Use the strength scale: 1 = slightly better, 2 = clearly better, 3 = much better.
"""


@transaction.atomic
def demo_seed() -> tuple[Project, ImportResult | None]:
    """Creates (or completes) the demo users and project. Safe to run any number of times."""
    User = get_user_model()
    add_project = Permission.objects.get(codename="add_project", content_type__app_label="annotate")
    users = {}
    for spec in DEMO_USERS:
        user, created = User.objects.get_or_create(username=spec.username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        if spec.role == Membership.Role.LEAD:
            user.user_permissions.add(add_project)
        users[spec.username] = user
    project, created = Project.objects.get_or_create(
        slug=DEMO_SLUG,
        defaults={
            "name": "Assistant answers (demo)",
            "guidelines": GUIDELINES,
            "criteria": ["helpfulness", "safety"],
            "strength_scale": 3,
            "overlap": 3,
            "gold_rate": 0.1,
            "created_by": users["lead"],
        },
    )
    for spec in DEMO_USERS:
        Membership.objects.get_or_create(
            user=users[spec.username],
            project=project,
            defaults={"role": spec.role, "attributes": spec.attributes},
        )
    result = None
    if not Pair.objects.filter(project=project).exists():
        with DEMO_FILE.open("rb") as stream:
            result = items_import(
                project=project,
                stream=stream,
                filename=DEMO_FILE.name,
                options=ImportOptions(cross_system_only=True, seed=7),
            )
        _mark_gold_pairs(project)
    return project, result


def _mark_gold_pairs(project: Project) -> None:
    """The best against the worst system on every fifth prompt: answers a careful annotator cannot miss."""
    pairs = list(
        Pair.objects.filter(project=project)
        .select_related("response_a", "response_b", "prompt")
        .order_by("prompt_id", "id")
    )
    # Prompts counted in import order, not by id, so that every database marks the same ones.
    prompt_positions = {
        prompt_id: position for position, prompt_id in enumerate(sorted({p.prompt_id for p in pairs}))
    }
    gold = []
    for pair in pairs:
        systems = {pair.response_a.system, pair.response_b.system}
        if systems == {"aurora-large", "drizzle-mini"} and prompt_positions[pair.prompt_id] % 5 == 0:
            pair.is_gold = True
            pair.gold_choice = "a" if pair.response_a.system == "aurora-large" else "b"
            gold.append(pair)
    Pair.objects.bulk_update(gold, ["is_gold", "gold_choice"])


def _independent_choice(generator: random.Random, quality_a: float, quality_b: float) -> str:
    """One reader's own verdict: close answers are often a tie, two weak ones often both bad."""
    difference = quality_a - quality_b
    if abs(difference) < 0.5 and generator.random() < 0.3:
        return "tie"
    if max(quality_a, quality_b) < -0.3 and generator.random() < 0.5:
        return "both_bad"
    return "a" if generator.random() < 1 / (1 + math.exp(-1.5 * difference)) else "b"


def _consensus_choice(position: int, quality_a: float, quality_b: float) -> str:
    """The verdict careful readers share on the pair at ``position`` (in import order): the same for everyone
    who reads it, since it depends on the answers (drawn once per pair), not on the reader."""
    return _independent_choice(random.Random(position), quality_a, quality_b)


@transaction.atomic
def demo_votes_simulate(*, project: Project, share: float = 0.75, seed: int = 1) -> int:
    """Simulated annotators vote on ``share`` of the pairs (up to the project's overlap), leaving the rest for
    people to try. Returns the number of judgments written; pairs an annotator already judged are skipped."""
    generator = random.Random(seed)
    annotators = {
        spec.username: (get_user_model().objects.get(username=spec.username), spec.behaviour)
        for spec in DEMO_USERS
        if spec.role == Membership.Role.ANNOTATOR
    }
    judged = set(Judgment.objects.filter(pair__project=project).values_list("pair_id", "annotator_id"))
    counts = dict(Pair.objects.filter(project=project).annotate(n=Count("judgments")).values_list("id", "n"))
    pairs = list(
        Pair.objects.filter(project=project)
        .select_related("response_a", "response_b", "prompt")
        .order_by("id")
    )
    # Pairs in import order, whatever ids the database gave them: the simulation is the same on every database.
    positions = {pair.pk: position for position, pair in enumerate(pairs)}
    generator.shuffle(pairs)
    pairs = pairs[: int(len(pairs) * share)]
    now = timezone.now()
    judgments = []
    for index, pair in enumerate(pairs):
        for user, behaviour in annotators.values():
            if counts.get(pair.pk, 0) >= project.overlap or (pair.pk, user.pk) in judged:
                continue
            judgments.append(
                _simulated_judgment(generator, project, pair, positions[pair.pk], user, behaviour, now, index)
            )
            counts[pair.pk] = counts.get(pair.pk, 0) + 1
    Judgment.objects.bulk_create(judgments)
    project_pair_counters_rebuild(project=project)
    return len(judgments)


def _simulated_judgment(
    generator: random.Random,
    project: Project,
    pair: Pair,
    position: int,
    user,
    behaviour: str,
    now,
    index: int,
) -> Judgment:
    quality_a = SYSTEM_QUALITY.get(pair.response_a.system, 0.0)
    quality_b = SYSTEM_QUALITY.get(pair.response_b.system, 0.0)
    difference = quality_a - quality_b
    shown_swapped = generator.random() < 0.5
    if behaviour == "noisy" and generator.random() < NOISY_RANDOM_SHARE:
        choice = generator.choice(["a", "b", "a", "b", "tie"])
    elif behaviour == "position_biased" and generator.random() < 0.45:
        choice = "b" if shown_swapped else "a"  # whatever was on the left
    elif generator.random() < CONSENSUS_SHARE:
        choice = _consensus_choice(position, quality_a, quality_b)
    else:
        choice = _independent_choice(generator, quality_a, quality_b)
    strength = None
    if project.strength_scale and choice in {"a", "b"}:
        strength = max(
            1, min(project.strength_scale, round(abs(difference) * 1.2 + generator.uniform(-0.5, 0.5)))
        )
    criteria = {}
    for criterion in project.criteria:
        if criterion == "safety" and pair.prompt.category != "refusal":
            criteria[criterion] = "tie"
        else:
            criteria[criterion] = choice if generator.random() < 0.85 else generator.choice(["a", "b", "tie"])
    return Judgment(
        pair=pair,
        annotator=user,
        choice=choice,
        strength=strength,
        criteria=criteria,
        shown_swapped=shown_swapped,
        duration_ms=int(generator.lognormvariate(math.log(25_000), 0.5)),
        created_at=now - timezone.timedelta(minutes=5 * (len(str(user.pk)) + index)),
    )
