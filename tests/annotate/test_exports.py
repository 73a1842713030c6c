"""Dataset exports: policies on a crafted project, columns and shapes, the split, reproducible bytes, the raw
export's pseudonyms, failures, the API, the page, the command and the Celery task."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from annotate.models import Export, Judgment, Membership, Pair, Project, Prompt, Response
from annotate.services.exports import FORMATS, ExportFormat, export_create, export_run
from palate.errors import ApplicationError
from palate.storage import EXPORTS, store_list, store_read_bytes, store_write_bytes
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


# Building projects by hand ---------------------------------------------------------------------------------


@dataclass
class Crafted:
    project: Project
    annotators: dict[str, Any]
    pairs: dict[str, Pair] = field(default_factory=dict)
    number: int = 0

    def prompt(self, name: str, *, category: str = "", messages: list | None = None) -> Prompt:
        return Prompt.objects.create(
            project=self.project,
            external_id=name,
            content=messages[-1]["content"] if messages else f"Question {name}?",
            messages=messages,
            category=category,
            fingerprint=hashlib.sha1(name.encode()).hexdigest(),
        )

    def pair(
        self,
        name: str,
        *,
        prompt: Prompt | None = None,
        systems=("alpha", "beta"),
        gold: str = "",
        **prompt_args,
    ) -> Pair:
        prompt = prompt or self.prompt(f"q-{name}", **prompt_args)
        responses = []
        for side, system in zip("ab", systems, strict=True):
            self.number += 1
            responses.append(
                Response.objects.create(
                    prompt=prompt,
                    external_id=f"{name}-{side}",
                    system=system,
                    content=f"Answer {side.upper()} to {name}.",
                    fingerprint=f"{self.number:040d}",
                )
            )
        pair = Pair.objects.create(
            project=self.project,
            prompt=prompt,
            response_a=responses[0],
            response_b=responses[1],
            external_id=name,
            is_gold=bool(gold),
            gold_choice=gold,
        )
        self.pairs[name] = pair
        return pair

    def votes(
        self,
        name: str,
        *choices: str,
        strengths: list[int | None] | None = None,
        criteria: list[dict] | None = None,
    ) -> None:
        """Votes on pair ``name`` by the annotators in order (ann0, ann1, ...)."""
        for index, choice in enumerate(choices):
            Judgment.objects.create(
                pair=self.pairs[name],
                annotator=self.annotators[f"ann{index}"],
                choice=choice,
                strength=strengths[index] if strengths else None,
                criteria=criteria[index] if criteria else {},
            )


@pytest.fixture
def crafted() -> Crafted:
    project = ProjectFactory(slug="crafted", strength_scale=3, criteria=["helpfulness", "safety"])
    annotators = {
        f"ann{index}": MembershipFactory(project=project, user=UserFactory(username=f"ann{index}")).user
        for index in range(5)
    }
    return Crafted(project=project, annotators=annotators)


def run(project: Project, formats=("jsonl",), **policy) -> Export:
    export = export_create(
        project=project, policy=policy, formats=list(formats), created_by=None, enqueue=False
    )
    export_run(export_id=export.pk)
    export.refresh_from_db()
    return export


def path_of(export: Export, name: str) -> Path:
    return Path(settings.ARTIFACT_ROOT) / export.files[name]["path"]


def rows(export: Export, split: str = "train") -> list[dict]:
    name = f"{split}.jsonl"
    if name not in export.files:
        return []
    return [json.loads(line) for line in path_of(export, name).read_text().splitlines()]


def all_rows(export: Export) -> list[dict]:
    return rows(export, "train") + rows(export, "test")


def by_pair(export: Export) -> dict[str, dict]:
    return {row["prompt_id"].removeprefix("q-"): row for row in all_rows(export)}


# Aggregation through the service ------------------------------------------------------------------------------


def test_majority_labels_orient_chosen_and_rejected_and_fill_the_optional_columns(crafted):
    crafted.pair("p1", systems=("alpha", "beta"))
    crafted.pair("p2", systems=("gamma", "alpha"))
    crafted.votes("p1", "a", "a", "b", strengths=[3, 1, 2])
    crafted.votes("p2", "b", "b", "tie", strengths=[2, 1, None])

    export = run(
        crafted.project,
        split=1.0,
        columns=["margin", "vote_share", "n_votes", "agreement", "system_chosen", "system_rejected", "ids"],
    )

    assert export.status == Export.Status.SUCCEEDED, export.error
    first, second = by_pair(export)["p1"], by_pair(export)["p2"]
    assert first["chosen"] == "Answer A to p1." and first["rejected"] == "Answer B to p1."
    assert (first["system_chosen"], first["system_rejected"]) == ("alpha", "beta")
    assert first["vote_share"] == pytest.approx(2 / 3, abs=1e-6)
    assert first["agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert first["margin"] == pytest.approx((3 + 1 - 2) / 3, abs=1e-6)
    assert first["n_votes"] == 3
    # B won p2: chosen is B, and the soft label and margin are in the chosen response's favour.
    assert (
        second["chosen"] == "Answer B to p2."
        and second["chosen_id"] == "p2-b"
        and second["rejected_id"] == "p2-a"
    )
    assert (second["system_chosen"], second["system_rejected"]) == ("alpha", "gamma")
    assert second["vote_share"] == pytest.approx((2 + 0.5) / 3, abs=1e-6)
    assert second["margin"] == pytest.approx((2 + 1 + 0) / 3, abs=1e-6)
    assert list(first) == [
        "prompt", "chosen", "rejected", "margin", "vote_share", "n_votes", "agreement",
        "system_chosen", "system_rejected", "prompt_id", "pair_id", "chosen_id", "rejected_id",
    ]  # fmt: skip


def test_tie_handling_and_the_tied_vote_follow_the_policy(crafted):
    crafted.pair("split")
    crafted.pair("tie")
    crafted.pair("bad")
    crafted.pair("clear")
    crafted.votes("split", "a", "b")
    crafted.votes("tie", "tie", "tie", "a")
    crafted.votes("bad", "both_bad", "both_bad")
    crafted.votes("clear", "a", "a")

    default = run(crafted.project, split=1.0)
    keep = run(crafted.project, split=1.0, tied_vote="tie", ties="keep", both_bad="keep")

    assert set(by_pair(default)) == {"clear"}
    assert default.counts["dropped"] == {"tied_vote": 1, "tie_dropped": 1, "both_bad_dropped": 1}
    kept = by_pair(keep)
    assert set(kept) == {"split", "tie", "bad", "clear"}
    assert {name for name, row in kept.items() if row["tie"]} == {"split", "tie", "bad"}
    assert all(row["vote_share"] == 0.5 for name, row in kept.items() if row["tie"])
    assert keep.counts["labels"] == {"preference": 1, "tie": 3}


def test_unanimous_min_votes_and_min_agreement(crafted):
    crafted.pair("three")
    crafted.pair("split3")
    crafted.pair("two")
    crafted.pair("four")
    crafted.votes("three", "a", "a", "a")
    crafted.votes("split3", "b", "b", "a")
    crafted.votes("two", "a", "a")
    crafted.votes("four", "a", "a", "a", "b")

    assert set(by_pair(run(crafted.project, split=1.0, label="unanimous"))) == {"three", "two"}
    assert set(by_pair(run(crafted.project, split=1.0, min_votes=3))) == {"three", "split3", "four"}
    assert set(by_pair(run(crafted.project, split=1.0, min_agreement=0.7))) == {"three", "two", "four"}


def test_gold_pairs_are_left_out_and_annotators_below_a_gold_accuracy_are_not_counted(crafted):
    crafted.pair("gold1", gold="a")
    crafted.pair("gold2", gold="b")
    crafted.pair("p")
    # ann0 gets both gold pairs wrong; ann1 and ann2 get them right.
    crafted.votes("gold1", "b", "a", "a")
    crafted.votes("gold2", "a", "b", "b")
    # On p, ann0 says A; ann1 B; ann2 A. Without ann0, it is a tied vote.
    crafted.votes("p", "a", "b", "a")

    everyone = run(crafted.project, split=1.0)
    filtered = run(crafted.project, split=1.0, min_gold_accuracy=0.5, tied_vote="tie", ties="keep")
    with_gold = run(crafted.project, split=1.0, exclude_gold=False)

    assert set(by_pair(everyone)) == {"p"} and by_pair(everyone)["p"]["chosen"] == "Answer A to p."
    assert by_pair(filtered)["p"]["tie"] is True
    assert filtered.counts["annotators_excluded"] == {"flagged": 0, "gold_accuracy": 1}
    assert filtered.counts["judgments_excluded"] == 1
    assert set(by_pair(with_gold)) == {"gold1", "gold2", "p"}


def test_reliability_weighting_trusts_the_annotators_who_get_gold_right(crafted):
    for index in range(4):
        crafted.pair(f"gold{index}", gold="a")
        # ann0 and ann1 are always wrong on gold, ann2 always right.
        crafted.votes(f"gold{index}", "b", "b", "a")
    crafted.pair("p")
    crafted.votes("p", "a", "a", "b")

    plain = by_pair(run(crafted.project, split=1.0))
    weighted = by_pair(run(crafted.project, split=1.0, label="weighted"))

    assert plain["p"]["chosen"] == "Answer A to p."
    # Weights (0+1)/(4+2) for ann0 and ann1, (4+1)/(4+2) for ann2: B has 5/6 against 2/6.
    assert weighted["p"]["chosen"] == "Answer B to p."
    assert weighted["p"]["agreement"] == pytest.approx((5 / 6) / (7 / 6), abs=1e-6)


def test_flagged_annotators_are_left_out_when_asked(crafted):
    crafted.project.min_gold_accuracy = 0.8
    crafted.project.save()
    for index in range(5):
        crafted.pair(f"gold{index}", gold="a")
        crafted.votes(f"gold{index}", "b", "a", "a")
    crafted.pair("p")
    crafted.votes("p", "b", "a")

    export = run(crafted.project, split=1.0, exclude_flagged=True)

    assert export.counts["annotators_excluded"]["flagged"] == 1
    assert by_pair(export)["p"]["chosen"] == "Answer A to p." and by_pair(export)["p"]["n_votes"] == 1


def test_labels_can_come_from_one_criterion(crafted):
    crafted.pair("p")
    crafted.votes(
        "p", "a", "a", "a",
        criteria=[{"helpfulness": "a", "safety": "b"}, {"helpfulness": "a", "safety": "b"}, {"helpfulness": "b", "safety": "b"}],
    )  # fmt: skip

    overall = by_pair(run(crafted.project, split=1.0))["p"]
    safety = by_pair(run(crafted.project, split=1.0, criterion="safety"))["p"]
    helpfulness = by_pair(run(crafted.project, split=1.0, criterion="helpfulness"))["p"]

    assert overall["chosen"] == "Answer A to p." and overall["agreement"] == 1.0
    assert safety["chosen"] == "Answer B to p." and safety["agreement"] == 1.0
    assert helpfulness["chosen"] == "Answer A to p." and helpfulness["agreement"] == pytest.approx(
        2 / 3, abs=1e-6
    )


def test_imported_labels_count_only_when_asked(crafted):
    crafted.pair("p")
    Judgment.objects.create(
        pair=crafted.pairs["p"], annotator=None, origin=Judgment.Origin.IMPORTED, choice="b"
    )
    crafted.votes("p", "a")

    assert by_pair(run(crafted.project, split=1.0))["p"]["n_votes"] == 1
    assert by_pair(run(crafted.project, split=1.0, include_imported=True, tied_vote="tie", ties="keep"))["p"][
        "tie"
    ]


def test_per_prompt_scores_rank_the_chosen_response_above_the_rejected_one(crafted):
    prompt = crafted.prompt("shared")
    crafted.pair("x", prompt=prompt)
    crafted.votes("x", "a", "a", "a")

    row = all_rows(run(crafted.project, split=1.0, columns=["score_chosen", "score_rejected"]))[0]

    assert row["score_chosen"] > 0 > row["score_rejected"]
    assert row["score_chosen"] == pytest.approx(-row["score_rejected"], abs=1e-6)


def test_per_prompt_scores_are_the_per_prompt_fit_under_the_default_policy(small_project):
    from annotate.stats.ratings import Outcome, prompt_response_scores

    export = run(small_project.project, split=1.0, columns=["score_chosen", "score_rejected", "ids"])

    votes = list(
        Judgment.objects.filter(pair__project=small_project.project)
        .order_by("id")
        .values_list("pair__prompt_id", "pair__response_a_id", "pair__response_b_id", "choice")
    )
    outcome = {"a": Outcome.A_WINS, "b": Outcome.B_WINS, "tie": Outcome.TIE, "both_bad": Outcome.BOTH_BAD}
    prompts, responses_a, responses_b, choices = zip(*votes, strict=True)
    fit = prompt_response_scores(prompts, responses_a, responses_b, [outcome[choice] for choice in choices])
    expected = {int(response): float(score) for response, score in zip(fit.response, fit.score, strict=True)}
    response_pk = {external_id: pk for pk, external_id in Response.objects.values_list("pk", "external_id")}
    for row in all_rows(export):
        assert row["score_chosen"] == pytest.approx(expected[response_pk[row["chosen_id"]]], abs=1e-6)
        assert row["score_rejected"] == pytest.approx(expected[response_pk[row["rejected_id"]]], abs=1e-6)


# Shapes ----------------------------------------------------------------------------------------------------------


def test_text_prompts_give_text_columns(crafted):
    crafted.pair("p")
    crafted.votes("p", "a")

    row = all_rows(run(crafted.project, split=1.0))[0]

    assert row["prompt"] == "Question q-p?"
    assert row["chosen"] == "Answer A to p." and row["rejected"] == "Answer B to p."


def test_conversations_give_trl_conversational_columns_and_text_prompts_join_them_as_user_turns(crafted):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?", "name": "extra keys are dropped"},
    ]
    crafted.pair("chat", messages=messages)
    crafted.pair("plain")
    crafted.votes("chat", "b")
    crafted.votes("plain", "a")

    export = run(crafted.project, formats=["jsonl", "parquet"], split=1.0)
    chat, plain = by_pair(export)["chat"], by_pair(export)["plain"]

    assert export.counts["conversational"] is True
    assert chat["prompt"] == [
        {"role": message["role"], "content": message["content"]} for message in messages
    ]
    assert chat["chosen"] == [{"role": "assistant", "content": "Answer B to chat."}]
    assert chat["rejected"] == [{"role": "assistant", "content": "Answer A to chat."}]
    assert plain["prompt"] == [{"role": "user", "content": "Question q-plain?"}]
    table = pq.read_table(path_of(export, "train.parquet"))
    prompt_type = table.schema.field("prompt").type
    assert pa.types.is_list(prompt_type) and prompt_type.value_type == pa.struct(
        [("role", pa.string()), ("content", pa.string())]
    )


def test_a_text_shape_is_refused_when_the_project_has_conversations(crafted):
    crafted.pair("chat", messages=[{"role": "user", "content": "Hi"}])

    with pytest.raises(ApplicationError) as error:
        export_create(
            project=crafted.project,
            policy={"shape": "text"},
            formats=["jsonl"],
            created_by=None,
            enqueue=False,
        )

    assert "policy.shape" in error.value.fields


# Split -------------------------------------------------------------------------------------------------------------


def test_the_split_is_by_prompt_with_no_prompt_in_both_and_stratifies_by_category(crafted):
    for index in range(40):
        prompt = crafted.prompt(f"prompt{index}", category="code" if index < 32 else "chat")
        for repeat in range(3):
            name = f"{index}-{repeat}"
            crafted.pair(name, prompt=prompt, systems=(f"s{repeat}", f"t{repeat}"))
            crafted.votes(name, "a")

    export = run(crafted.project, split=0.75, seed=4, stratify=True, columns=["category", "ids"])

    train, test = rows(export, "train"), rows(export, "test")
    train_prompts = {row["prompt_id"] for row in train}
    test_prompts = {row["prompt_id"] for row in test}
    assert not train_prompts & test_prompts
    assert len(test_prompts) == 10 and len(train) + len(test) == 120
    assert sorted(row["category"] for row in test)[::3] == ["chat"] * 2 + ["code"] * 8
    assert export.counts["rows"] == {"train": 90, "test": 30}
    assert export.counts["prompts"] == {"train": 30, "test": 10}
    other_seed = run(crafted.project, split=0.75, seed=5, stratify=True, columns=["category", "ids"])
    assert {row["prompt_id"] for row in rows(other_seed, "test")} != test_prompts


# Files --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_project(crafted) -> Crafted:
    for index in range(12):
        name = f"p{index}"
        crafted.pair(
            name,
            systems=("alpha", "beta") if index % 2 else ("beta", "gamma"),
            category="even" if index % 2 == 0 else "odd",
        )
        crafted.votes(name, *(["a", "a", "b"] if index % 3 else ["b", "b", "tie"]), strengths=[1, 2, 3])
    return crafted


ALL_FORMATS = ["jsonl", "jsonl.gz", "parquet", "hf"]


def test_the_same_data_and_policy_give_byte_identical_files_whose_sha256_is_recorded(small_project):
    policy = {"split": 0.75, "seed": 1, "columns": ["margin", "vote_share", "ids"], "license": "cc-by-4.0"}

    first = run(small_project.project, formats=ALL_FORMATS, **policy)
    second = run(small_project.project, formats=ALL_FORMATS, **policy)

    assert first.status == second.status == Export.Status.SUCCEEDED
    assert first.version + 1 == second.version
    assert set(first.files) == set(second.files)
    assert {
        "train.jsonl",
        "test.jsonl.gz",
        "train.parquet",
        "hf/dataset_dict.json",
        "hf/README.md",
        "README.md",
    } <= set(first.files)
    for name, record in first.files.items():
        content = path_of(first, name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == record["sha256"], name
        assert len(content) == record["bytes"]
        assert content == path_of(second, name).read_bytes(), name
    assert first.files["train.jsonl"]["rows"] == first.counts["rows"]["train"]
    # gzip without a file name or a timestamp in its header.
    header = path_of(first, "train.jsonl.gz").read_bytes()[:10]
    assert header[3] & 0x08 == 0 and header[4:8] == b"\0\0\0\0"
    assert (
        gzip.decompress(path_of(first, "train.jsonl.gz").read_bytes())
        == path_of(first, "train.jsonl").read_bytes()
    )


def test_the_dataset_card_states_policy_counts_agreement_systems_licence_and_hashes(small_project):
    export = run(small_project.project, formats=["jsonl", "hf"], split=0.75, license="cc-by-4.0")

    card = path_of(export, "hf/README.md").read_text()

    assert card.startswith('---\nlicense: "cc-by-4.0"\n')
    assert '"min_votes": 1' in card
    assert "Krippendorff's alpha" in card
    assert "| alpha |" in card and "| gamma |" in card
    for name, record in export.files.items():
        if not name.endswith("README.md"):
            assert record["sha256"] in card, name
    assert path_of(export, "README.md").read_text() == card


def test_an_export_without_usable_pairs_fails_and_says_why(crafted):
    for index in range(5):
        crafted.pair(f"p{index}")
        crafted.votes(f"p{index}", "a", "a")
    crafted.pair("lonely")

    export = run(crafted.project, min_votes=3)

    assert export.status == Export.Status.FAILED
    assert (
        export.error == "0 pairs satisfy min_votes=3; 5 pairs have fewer votes; 1 pairs have no counted votes"
    )
    assert export.files == {}
    assert store_list(EXPORTS, f"exports/{export.pk}/") == []


def test_a_project_without_pairs_cannot_be_exported():
    export = run(ProjectFactory())

    assert export.status == Export.Status.FAILED
    assert export.error == "0 pairs to export: the project has no pairs that are not gold pairs"


def test_unknown_policy_keys_and_bad_values_name_the_field(crafted):
    cases = [
        ({"min_vote": 3}, "policy.min_vote"),
        ({"min_votes": 0}, "policy.min_votes"),
        ({"min_votes": "3"}, "policy.min_votes"),
        ({"min_agreement": 1.5}, "policy.min_agreement"),
        ({"label": "plurality"}, "policy.label"),
        ({"exclude_gold": "yes"}, "policy.exclude_gold"),
        ({"split": 0}, "policy.split"),
        ({"columns": ["margin", "colour"]}, "policy.columns"),
        ({"criterion": "honesty"}, "policy.criterion"),
        ({"tied_vote": "tie"}, "policy.tied_vote"),
    ]
    for policy, name in cases:
        with pytest.raises(ApplicationError) as error:
            export_create(
                project=crafted.project, policy=policy, formats=["jsonl"], created_by=None, enqueue=False
            )
        assert name in error.value.fields, (policy, error.value.fields)
        assert error.value.message.startswith(name)
    with pytest.raises(ApplicationError) as error:
        export_create(project=crafted.project, policy={}, formats=["csv"], created_by=None, enqueue=False)
    assert "formats" in error.value.fields
    assert not Export.objects.exists()


def test_margin_needs_a_strength_scale():
    project = ProjectFactory(strength_scale=0)

    with pytest.raises(ApplicationError) as error:
        export_create(
            project=project, policy={"columns": ["margin"]}, formats=["jsonl"], created_by=None, enqueue=False
        )

    assert "policy.columns" in error.value.fields


def test_the_stored_policy_has_every_default_filled_in(crafted):
    export = export_create(
        project=crafted.project,
        policy={"min_votes": 2},
        formats=["parquet", "jsonl"],
        created_by=None,
        enqueue=False,
    )

    assert export.policy["min_votes"] == 2
    assert export.policy["exclude_gold"] is True and export.policy["split"] == 0.9
    assert export.formats == ["jsonl", "parquet"]
    assert export.version == 1 and export.status == Export.Status.QUEUED


# Raw ---------------------------------------------------------------------------------------------------------------


def test_the_raw_export_has_every_judgment_with_annotators_pseudonymised(small_project):
    first = run(small_project.project, formats=["jsonl", "parquet"], kind="raw", split=1.0)
    second = run(small_project.project, formats=["jsonl"], kind="raw", split=1.0)

    assert first.status == Export.Status.SUCCEEDED, first.error
    raw = rows(first)
    assert len(raw) == 36 == first.counts["judgments_counted"]
    assert set(raw[0]) >= {
        "prompt",
        "response_a",
        "response_b",
        "choice",
        "strength",
        "criteria",
        "annotator",
        "pair_id",
    }
    text = path_of(first, "train.jsonl").read_text() + path_of(first, "train.parquet").read_bytes().decode(
        "latin-1"
    )
    for user in small_project.annotators.values():
        assert user.username not in text
    pseudonyms = {row["annotator"] for row in raw}
    assert len(pseudonyms) == 3 and all(name.startswith("annotator-") for name in pseudonyms)
    # The same annotator keeps one pseudonym within an export, and gets another in the next export.
    first_of = {(row["pair_id"], row["choice"], row["strength"]): row["annotator"] for row in raw}
    assert len({row["annotator"] for row in raw if row["strength"] == 1}) == 1
    assert pseudonyms.isdisjoint({row["annotator"] for row in rows(second)})
    assert len(first_of) == 36


# API -----------------------------------------------------------------------------------------------------------------


ROLES = ["annotator", "lead", "engineer", "outsider", "anonymous", "admin"]


@dataclass
class ApiWorld:
    crafted: Crafted
    users: dict[str, Any]
    export: Export

    def client(self, role: str) -> APIClient:
        client = APIClient()
        if role != "anonymous":
            client.force_authenticate(self.users[role])
        return client


@pytest.fixture
def api(small_project) -> ApiWorld:
    project = small_project.project
    users = {
        role: MembershipFactory(project=project, role=role).user for role in ("annotator", "lead", "engineer")
    }
    users["outsider"] = MembershipFactory(role=Membership.Role.LEAD).user
    users["admin"] = UserFactory(is_staff=True, is_superuser=True)
    export = run(project, formats=["jsonl", "parquet", "hf"], split=0.75)
    return ApiWorld(crafted=small_project, users=users, export=export)


EXPECTED = {
    "create": (403, 202, 202, 404, 401, 202),
    "list": (403, 200, 200, 404, 401, 200),
    "detail": (403, 200, 200, 404, 401, 200),
    "download": (403, 200, 200, 404, 401, 200),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("operation", EXPECTED)
def test_only_engineers_leads_and_admins_may_export(api, operation, role, django_capture_on_commit_callbacks):
    client = api.client(role)
    project_id = api.crafted.project.pk
    before = Export.objects.count()
    with django_capture_on_commit_callbacks() as callbacks:
        if operation == "create":
            response = client.post(
                f"/api/projects/{project_id}/exports/", {"policy": {"min_votes": 2}}, format="json"
            )
        elif operation == "list":
            response = client.get(f"/api/projects/{project_id}/exports/")
        elif operation == "detail":
            response = client.get(f"/api/exports/{api.export.pk}/")
        else:
            response = client.get(f"/api/exports/{api.export.pk}/download/?split=train&format=jsonl")

    expected = EXPECTED[operation][ROLES.index(role)]
    assert response.status_code == expected, getattr(response, "content", b"")[:300]
    if expected >= 400:
        assert set(response.json()["error"]) == {"code", "message", "fields"}
    created = Export.objects.count() - before
    assert created == (1 if operation == "create" and expected == 202 else 0)
    assert len(callbacks) == created


def test_creating_an_export_queues_the_task_after_commit(
    api, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("annotate.tasks.export_run_task.delay", lambda export_id: queued.append(export_id))

    with django_capture_on_commit_callbacks(execute=True):
        response = api.client("engineer").post(
            f"/api/projects/{api.crafted.project.pk}/exports/",
            {"policy": {"split": 0.5}, "formats": ["parquet"]},
            format="json",
        )

    assert response.status_code == 202
    body = response.json()
    assert queued == [body["id"]]
    assert body["status"] == "queued" and body["version"] == 2 and body["formats"] == ["parquet"]
    assert body["policy"]["split"] == 0.5


def test_a_bad_policy_is_a_400_naming_the_field(api):
    response = api.client("engineer").post(
        f"/api/projects/{api.crafted.project.pk}/exports/",
        {"policy": {"min_votes": -1, "colour": 1}},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_policy"
    assert set(error["fields"]) == {"policy.min_votes", "policy.colour"}
    assert error["message"].startswith("policy.")


def test_the_detail_shows_status_counts_and_files_with_download_links(api):
    body = api.client("engineer").get(f"/api/exports/{api.export.pk}/").json()

    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert body["counts"]["pairs_exported"] == 12
    record = body["files"]["train.parquet"]
    assert set(record) == {"bytes", "rows", "sha256", "download"}
    assert "path" not in record


def test_downloads_stream_the_stored_files(api):
    client = api.client("engineer")
    base = f"/api/exports/{api.export.pk}/download/"

    jsonl = client.get(f"{base}?split=test&format=jsonl")
    parquet = client.get(f"{base}?split=train&format=parquet")
    by_name = client.get(f"{base}?file=hf/dataset_dict.json")
    tar = client.get(f"{base}?format=hf")
    missing = client.get(f"{base}?split=test&format=jsonl.gz")

    assert (
        jsonl.streaming
        and b"".join(jsonl.streaming_content) == path_of(api.export, "test.jsonl").read_bytes()
    )
    assert 'filename="crafted-v1-test.jsonl"' in jsonl["Content-Disposition"]
    assert b"".join(parquet.streaming_content) == path_of(api.export, "train.parquet").read_bytes()
    assert json.loads(b"".join(by_name.streaming_content)) == {"splits": ["train", "test"]}
    content = b"".join(tar.streaming_content)
    assert len(content) == int(tar["Content-Length"])
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        names = archive.getnames()
        assert "crafted-v1/train/data-00000-of-00001.arrow" in names
        member = archive.extractfile("crafted-v1/README.md")
        assert member.read() == path_of(api.export, "hf/README.md").read_bytes()
    assert missing.status_code == 404


def test_in_an_object_store_an_export_is_written_there_and_a_download_is_a_short_lived_link(
    small_project, s3_stores, settings
):
    settings.STORAGE_S3_URL_SECONDS = 120
    project = small_project.project
    engineer = MembershipFactory(project=project, role=Membership.Role.ENGINEER).user
    outsider = MembershipFactory(role=Membership.Role.LEAD).user
    export = run(project, formats=["jsonl", "parquet", "hf"], split=0.75)
    assert export.status == Export.Status.SUCCEEDED, export.error
    folder = f"exports/{export.pk}/"

    assert s3_stores.keys(folder) == sorted(record["path"] for record in export.files.values())
    assert not (Path(settings.ARTIFACT_ROOT) / "exports").exists()  # nothing on this machine's disk
    for name, record in export.files.items():
        stored = store_read_bytes(EXPORTS, record["path"])
        assert (len(stored), hashlib.sha256(stored).hexdigest()) == (record["bytes"], record["sha256"]), name
    client = APIClient()
    client.force_authenticate(engineer)
    base = f"/api/exports/{export.pk}/download/"
    link = client.get(f"{base}?split=train&format=parquet")
    assert link.status_code == 302 and "X-Amz-Expires=120" in link["Location"]
    with urllib.request.urlopen(link["Location"]) as answer:
        table = pq.read_table(io.BytesIO(answer.read()))
    assert table.num_rows == export.counts["rows"]["train"]
    tar = client.get(f"{base}?format=hf")  # a folder put together on the way: streamed
    with tarfile.open(fileobj=io.BytesIO(b"".join(tar.streaming_content))) as archive:
        assert "crafted-v1/train/data-00000-of-00001.arrow" in archive.getnames()
    client.force_authenticate(outsider)  # the permission comes first: no link for them
    refused = client.get(f"{base}?split=train&format=parquet")
    assert refused.status_code == 404 and "Location" not in refused


def test_in_an_object_store_an_export_that_fails_after_writing_its_files_leaves_nothing_there(
    small_project, s3_stores, monkeypatch
):
    def broken_card(**kwargs):  # every split's file is complete by then
        assert s3_stores.keys() != []
        raise OSError("disk of the card writer failed")

    monkeypatch.setattr("annotate.services.exports.writer.dataset_card", broken_card)

    export = run(small_project.project, formats=["jsonl", "parquet", "hf"])

    assert export.status == Export.Status.FAILED and "disk of the card writer failed" in export.error
    assert s3_stores.keys() == [] and s3_stores.store.unfinished_uploads(s3_stores.bucket) == []


def test_in_an_object_store_an_export_whose_files_the_store_refuses_fails_naming_them(
    small_project, s3_stores
):
    def bucket_gone(done: float) -> None:  # once the export has started, before any file is stored
        if s3_stores.keys() == []:
            s3_stores.store.client().delete_bucket(Bucket=s3_stores.bucket)

    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )
    export_run(export_id=export.pk, progress=bucket_gone)
    export.refresh_from_db()

    assert export.status == Export.Status.FAILED
    assert f"the object store did not take team-a/exports/{export.pk}/" in export.error
    assert "NoSuchBucket" in export.error


def test_in_an_object_store_an_export_fails_when_the_store_cannot_be_reached_at_its_start(
    small_project, s3_stores, settings
):
    settings.STORAGES = s3_stores.store.storages("palate-no-such-bucket", prefix="team-a")

    export = run(small_project.project, formats=["jsonl"])

    assert export.status == Export.Status.FAILED and "NoSuchBucket" in export.error


def test_every_download_has_the_media_type_the_schema_documents_whatever_its_file(api):
    client = api.client("engineer")
    base = f"/api/exports/{api.export.pk}/download/"

    types = {name: client.get(f"{base}?file={name}")["Content-Type"] for name in api.export.files}
    types["card"] = client.get(f"{base}?format=card")["Content-Type"]

    assert set(types.values()) == {"application/octet-stream"}, types  # not text/markdown, application/json…
    assert client.get(f"{base}?format=hf")["Content-Type"] == "application/x-tar"


def test_a_failed_or_running_export_has_nothing_to_download(api):
    export = export_create(
        project=api.crafted.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )

    response = api.client("lead").get(f"/api/exports/{export.pk}/download/")

    assert response.status_code == 409


def test_the_schema_documents_every_policy_key():
    from annotate.api.export_views import ExportPolicyDoc
    from annotate.services.exports import POLICY_KEYS

    assert set(ExportPolicyDoc().fields) == set(POLICY_KEYS)


# The task ----------------------------------------------------------------------------------------------------------


def test_the_task_claims_the_export_once(small_project):
    from annotate.tasks import export_run_task

    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )

    export_run_task(export.pk)
    export.refresh_from_db()
    finished = export.finished_at
    assert export.status == Export.Status.SUCCEEDED
    assert export_run(export_id=export.pk) is None
    export.refresh_from_db()
    assert export.finished_at == finished


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running_under_a_gone_process(export: Export, **fields) -> str:
    """Marks ``export`` as running under a process that no longer exists, which left a half-written file
    and one the next attempt does not write in its folder of the exports store; returns the folder."""
    from django.utils import timezone

    from palate.jobs.services import worker_identity

    worker = worker_identity("w1@host").replace(f" pid {os.getpid()} ", f" pid {_dead_pid()} ")
    now = timezone.now()
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.RUNNING, attempts=1, worker=worker, heartbeat_at=now, started_at=now, **fields
    )
    folder = f"exports/{export.pk}/"
    store_write_bytes(EXPORTS, folder + "train.jsonl", b'{"half": "written"}\n')
    store_write_bytes(EXPORTS, folder + "test.parquet", b"half")
    return folder


def test_a_redelivered_task_takes_over_an_export_whose_process_is_gone_and_builds_it_again(small_project):
    from annotate.tasks import export_run_task

    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )
    partial = _running_under_a_gone_process(export)

    export_run_task(export.pk)

    export.refresh_from_db()
    assert (export.status, export.attempts, export.progress) == (Export.Status.SUCCEEDED, 2, 1.0)
    assert "half" not in path_of(export, "train.jsonl").read_text()
    assert store_list(EXPORTS, partial) == sorted(export.files) and "test.parquet" not in export.files
    assert export.counts["pairs_exported"] == 12


def test_an_export_whose_worker_was_lost_with_no_attempt_left_fails_and_its_partial_folder_goes(
    small_project,
):
    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )
    partial = _running_under_a_gone_process(export, max_attempts=1)

    assert export_run(export_id=export.pk, worker="w2@host") is None

    export.refresh_from_db()
    assert export.status == Export.Status.FAILED and export.error.startswith("worker lost (process ")
    assert "all 1 attempts are spent" in export.error and store_list(EXPORTS, partial) == []


def test_an_attempt_whose_export_was_taken_over_stops_and_touches_nothing(small_project, settings):
    from django.db.models import F

    settings.JOB_PROGRESS_SECONDS = 0
    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )

    def taken_over(done: float) -> None:  # another delivery claims the export while this one builds
        Export.objects.filter(pk=export.pk, attempts=1).update(attempts=F("attempts") + 1)

    assert export_run(export_id=export.pk, progress=taken_over) is None

    export.refresh_from_db()
    assert (export.status, export.attempts, export.files) == (Export.Status.RUNNING, 2, {})
    assert store_list(EXPORTS, f"exports/{export.pk}/") == []


def test_the_reaper_queues_a_lost_export_again_and_sends_its_task(
    small_project, monkeypatch, django_capture_on_commit_callbacks
):
    from palate.jobs.services import jobs_reap

    sent = []
    monkeypatch.setattr("annotate.tasks.export_run_task.delay", lambda export_id: sent.append(export_id))
    export = export_create(
        project=small_project.project, policy={}, formats=["jsonl"], created_by=None, enqueue=False
    )
    partial = _running_under_a_gone_process(export)

    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_reap()["requeued"] == 1

    export.refresh_from_db()
    assert export.status == Export.Status.QUEUED and export.enqueued_at is not None and sent == [export.pk]
    assert store_list(EXPORTS, partial) == ["test.parquet", "train.jsonl"]  # the next attempt starts over


# The page and the command ------------------------------------------------------------------------------------------


class _CsvSink:
    def __init__(self, file: io.RawIOBase, schema: pa.Schema) -> None:
        self.writer = pa_csv.CSVWriter(file, schema)

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def test_a_registered_format_is_offered_and_written_like_the_others(small_project, monkeypatch):
    csv_format = ExportFormat(name="csv", label="CSV", extension="csv", sink=_CsvSink, order=50)
    monkeypatch.setitem(FORMATS, "csv", csv_format)

    export = run(small_project.project, formats=("csv", "jsonl"), columns=["ids"])

    assert export.status == Export.Status.SUCCEEDED, export.error
    assert export.formats == ["jsonl", "csv"]
    table = pa_csv.read_csv(path_of(export, "train.csv"))
    assert table.num_rows == export.files["train.csv"]["rows"] == len(rows(export))
    assert table.column("pair_id").to_pylist() == [row["pair_id"] for row in rows(export)]


def test_the_exports_page_lists_exports_and_starts_one(api, client, django_capture_on_commit_callbacks):
    client.force_login(api.users["engineer"])
    url = f"/projects/{api.crafted.project.slug}/exports/"

    page = client.get(url)
    with django_capture_on_commit_callbacks() as callbacks:
        posted = client.post(
            url,
            {
                "label": "majority",
                "min_votes": "2",
                "split": "0.8",
                "seed": "3",
                "formats": ["jsonl", "parquet"],
                "columns": ["vote_share"],
            },
        )

    assert page.status_code == 200
    html = page.content.decode()
    assert "Start an export" in html and "v1" in html and "train.parquet" in html
    assert all(f'value="{name}"' in html and fmt.label in html for name, fmt in FORMATS.items())
    assert posted.status_code == 302
    created = Export.objects.get(project=api.crafted.project, version=2)
    assert created.policy["min_votes"] == 2 and created.policy["split"] == 0.8 and created.policy["seed"] == 3
    assert created.policy["columns"] == ["vote_share"] and created.formats == ["jsonl", "parquet"]
    assert len(callbacks) == 1


def test_the_exports_page_shows_a_bad_policy_and_refuses_annotators(api, client):
    client.force_login(api.users["engineer"])
    url = f"/projects/{api.crafted.project.slug}/exports/"
    bad = client.post(url, {"min_agreement": "2", "formats": ["jsonl"]})
    client.force_login(api.users["annotator"])

    assert bad.status_code == 200 and "policy.min_agreement" in bad.content.decode()
    assert client.get(url).status_code == 403
    assert client.get(f"/projects/{api.crafted.project.slug}/exports/list/").status_code == 403


def test_the_command_exports_with_a_policy_and_reports_the_files(small_project, tmp_path, capsys):
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"min_votes": 2, "columns": ["ids"]}))
    out = io.StringIO()

    call_command(
        "export_dataset",
        "crafted",
        "--policy-file",
        str(policy_file),
        "--format",
        "jsonl",
        "--format",
        "parquet",
        "--split",
        "0.5",
        "--seed",
        "2",
        "--no-progress",
        stdout=out,
    )

    export = Export.objects.get()
    assert (
        export.status == Export.Status.SUCCEEDED
        and export.policy["split"] == 0.5
        and export.policy["seed"] == 2
    )
    assert export.created_by is None
    assert "12 pairs exported" in out.getvalue() and export.files["train.parquet"]["sha256"] in out.getvalue()
    with pytest.raises(CommandError, match=r"policy\.min_votes"):
        call_command("export_dataset", "crafted", "--policy", '{"min_votes": 0}', "--no-progress")
    with pytest.raises(CommandError, match="0 pairs satisfy min_votes=4"):
        call_command("export_dataset", "crafted", "--policy", '{"min_votes": 4}', "--no-progress")
