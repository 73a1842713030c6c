"""The database functions behind next and submit (annotate/sql/workspace_v3.sql)."""

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


def _pair_entries_read() -> int:
    """Rows and index entries of annotate_pair that scans read in the current transaction so far, over the
    table and all of its indexes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_stat_get_xact_tuples_returned(relation))::bigint FROM ("
            " SELECT 'annotate_pair'::regclass::oid AS relation"
            " UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid = 'annotate_pair'::regclass) AS relations"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order", ["breadth_first", "depth_first", "priority"])
def test_a_claim_looks_up_only_its_window_while_the_planner_believes_the_pairs_gone(order):
    # Pairs analysed after a project's deletion (no live rows, its pages still there), and a new session:
    # the planner believes every window holds one pair. Joined back to the pairs in one statement, the
    # window was then matched by scanning the whole key, the open check run on every pair, for each pair.
    deleted = ProjectFactory()
    for _ in range(100):
        PairFactory(prompt__project=deleted)
    deleted.delete()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_pair, annotate_assignment, annotate_judgment")
    connection.close()
    project = ProjectFactory(overlap=3, assignment_order=order)
    for _ in range(70):
        PairFactory(prompt__project=project)
    annotator = UserFactory()
    MembershipFactory(user=annotator, project=project, role=Membership.Role.ANNOTATOR)

    # The pairs the annotator judged stay open, and head the depth-first and priority windows: the next
    # claim steps over them (PL/pgSQL has kept its statements' generic plans after five runs).
    for _ in range(30):
        lease = pair_claim_next(project=project, annotator=annotator)
        judgment_submit(assignment_id=lease.pk, annotator=annotator, data=JudgmentInput(choice="left"))
    with transaction.atomic():
        before = _pair_entries_read()
        lease = pair_claim_next(project=project, annotator=annotator)
        reads = _pair_entries_read() - before
    assert lease.pair.prompt.project_id == project.pk
    # The window's entries (64 at most) and the lease's own reads; a scan per pair of the window read
    # thousands here.
    assert reads <= 2 * 64, reads
