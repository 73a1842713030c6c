"""The database functions behind next and submit (annotate/sql/workspace_v2.sql)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from annotate.models import Membership
from annotate.services.assignment import pair_claim_next
from annotate.services.judgments import JudgmentInput, judgment_submit
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, UserFactory


def _sequential_scans(*tables: str) -> dict[str, int]:
    """Sequential scans of these tables in the current transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)", [list(tables)]
        )
        found = dict(cursor.fetchall())
    return {table: found.get(table, 0) for table in tables}


@pytest.mark.django_db(transaction=True)
def test_next_and_submit_probe_indexes_even_when_the_planner_believes_the_tables_empty():
    # Leases and judgments analysed while empty, as after a project's deletion or in a new deployment, and
    # a new session, so that no plan is kept from before: the plans of this session are made now.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_assignment, annotate_judgment")
    connection.close()
    project = ProjectFactory(overlap=3)
    for _ in range(40):
        PairFactory(prompt__project=project)
    annotators = [UserFactory() for _ in range(3)]
    for annotator in annotators:
        MembershipFactory(user=annotator, project=project, role=Membership.Role.ANNOTATOR)

    def judge(annotator) -> None:
        lease = pair_claim_next(project=project, annotator=annotator)
        judgment_submit(assignment_id=lease.pk, annotator=annotator, data=JudgmentInput(choice="left"))

    # The first calls plan every statement (PL/pgSQL keeps a statement's generic plan after five).
    for _ in range(8):
        for annotator in annotators:
            judge(annotator)
    with transaction.atomic():
        # The foreign keys are checked now rather than at commit, so that their scans count here too.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        before = _sequential_scans("annotate_assignment", "annotate_judgment", "annotate_pair")
        for annotator in annotators:
            judge(annotator)
        after = _sequential_scans("annotate_assignment", "annotate_judgment", "annotate_pair")
    assert after == before, (before, after)
