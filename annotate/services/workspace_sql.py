"""The annotator's two busiest statements as PostgreSQL functions: "next pair" and "submit".

Each is one round trip instead of six to nine: the function locks, reads, leases or records, recomputes the
pair's counters and returns what the page shows, inside one transaction, and PostgreSQL keeps its plans.
A PL/pgSQL function takes a new snapshot for every statement it runs (READ COMMITTED), so "lock the
membership (or the pair), then read" keeps the guarantee that the Python version gets from two statements.

A new lease commits without waiting for its write-ahead log to reach the disk (``synchronous_commit`` off
for that transaction only): if the database crashed within the next fraction of a second, the lease would
be forgotten and its pair handed out again, which is harmless, and the annotator saves the wait for a disk
flush on every item (a quarter of the serial time of a next → submit cycle, measured). A judgment still
commits durably: "submit" never changes that setting.

The SQL fragments below are shared with the portable path in ``assignment.py`` and ``judgments.py`` (SQLite,
the embedded default, has no stored functions): the same text, filled with ``%(name)s`` parameters there and
with the functions' arguments here. ``install_workspace_functions`` (re)creates the functions after every
``migrate``, so they always match this file.
"""

from __future__ import annotations

from django.db import connections, transaction

# The user an API token belongs to: id, whether they may log in, whether they are a site admin.
TOKEN_USER_SQL = """
    SELECT u.id, u.is_active, u.is_superuser OR u.is_staff
    FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id WHERE t.key = {token}
"""

# The project's assignment settings and the user's role in it (NULL when they are not a member).
PROJECT_ROLE_SQL = """
    SELECT p.overlap, p.gold_rate, p.lease_seconds,
           CASE WHEN p.assignment_strategy <> 'fill' THEN 'priority'
                WHEN p.assignment_order = 'breadth_first' THEN 'breadth' ELSE 'depth' END,
           (SELECT m.role FROM annotate_membership m WHERE m.project_id = p.id AND m.user_id = {user})
    FROM annotate_project p WHERE p.id = {project}
"""

# Columns of a live lease, in the order ``_assignment`` takes them.
LIVE_LEASE_SQL = """
    SELECT a.id, a.pair_id, a.shown_swapped, a.created_at, a.expires_at FROM annotate_assignment a
    WHERE a.annotator_id = {user} AND a.project_id = {project} AND a.status = 'active'
      AND a.expires_at > {now} AND a.id <> {after}
    ORDER BY a.created_at, a.id LIMIT 1
"""

# The next pair for an annotator, leased in the same statement. The pair is one with room
# (``slots_taken < overlap``) that the annotator has not judged, skipped or leased, taken in the project's
# fill order from the index that matches it, within the reach given (CLAIM_REACHES); ``SKIP LOCKED`` lets
# concurrent claims pass each other. ``claim_statement`` fills in the order and the reach.
CLAIM_SQL = """
    WITH candidate AS (
        SELECT p.id FROM {pairs}
        WHERE p.project_id = {project} AND p.is_gold = {gold} AND p.slots_taken < {overlap} {reach}
          AND NOT EXISTS (
              SELECT 1 FROM annotate_judgment j WHERE j.pair_id = p.id AND j.annotator_id = {user}
              LIMIT 1 OFFSET 0)
          AND NOT EXISTS (
              SELECT 1 FROM annotate_assignment a
              WHERE a.pair_id = p.id AND a.annotator_id = {user} AND a.project_id = {project}
                AND a.status IN ('active', 'skipped')
              LIMIT 1 OFFSET 0)
        ORDER BY {order}
        LIMIT 1
        {lock}
    )
    INSERT INTO annotate_assignment
        (project_id, pair_id, annotator_id, shown_swapped, status, skip_reason, created_at, expires_at)
    SELECT {project}, candidate.id, {user}, {swapped}, 'active', '', {now}, {expires} FROM candidate
    RETURNING id, pair_id
"""

# Fill orders, by the name the functions take.
CLAIM_ORDERS = {
    "depth": "p.slots_taken DESC, p.id",
    "breadth": "p.slots_taken, p.id",
    "priority": "p.priority DESC, p.slots_taken DESC, p.id",
}

# Open pairs a claim looks at the first CLAIM_WINDOW of, in the fill order.
CLAIM_WINDOW = 64

# Where a claim looks, one reach after the other until one finds a pair: the first CLAIM_WINDOW open
# pairs in the fill order; then the pairs nobody has started; then every open pair. Open pairs this
# annotator has judged stay open until others judge them, and head the depth-first order: an annotator
# who worked alone had every claim step over each of them (5.0 ms per "next" after 6,000 judgments against
# 1.0 ms after 1,000, measured). Within the window the order holds as before; past it, a pair nobody
# started comes before one deeper in the order, and every open pair is looked at only when no pair nobody
# started is left. Each reach is (pairs, filter, order). The window is read off the order's index first
# and joined back, so that the scan stops at its first pair as the others do; the judged-or-leased checks
# are fenced (OFFSET 0) so that each stays a probe per pair looked at, never a join over all of the
# annotator's rows (which index a probe takes is still the planner's choice, from the statistics).
CLAIM_REACHES = {
    "window": (
        """(SELECT w.id, w.slots_taken, w.priority FROM annotate_pair w
           WHERE w.project_id = {project} AND w.is_gold = {gold} AND w.slots_taken < {overlap}
           ORDER BY {window_order} LIMIT {window}) AS w
        JOIN annotate_pair p ON p.id = w.id""",
        "",
        "{window_order}",
    ),
    "unstarted": ("annotate_pair p", "AND p.slots_taken = 0", "{order}"),
    "open": ("annotate_pair p", "", "{order}"),
}


def claim_statement(order: str, reach: str) -> str:
    """CLAIM_SQL for a fill order and a reach, its parameters still to be named (``portable``)."""
    pairs, condition, ordering = CLAIM_REACHES[reach]
    return (
        CLAIM_SQL.replace("{pairs}", pairs)
        .replace("{reach}", condition)
        .replace("ORDER BY {order}", f"ORDER BY {ordering}")
        .replace("{window_order}", CLAIM_ORDERS[order].replace("p.", "w."))
        .replace("{order}", CLAIM_ORDERS[order])
        .replace("{window}", str(CLAIM_WINDOW))
    )


# A pair's counters recomputed from its rows (call with the pair's row locked).
RECOMPUTE_SQL = """
    UPDATE annotate_pair SET judgment_count = counts.judgments, slots_taken = counts.judgments + counts.leases
    FROM (SELECT
            (SELECT COUNT(*) FROM annotate_judgment WHERE pair_id = {pair} AND origin = 'human') AS judgments,
            (SELECT COUNT(*) FROM annotate_assignment
             WHERE pair_id = {pair} AND status = 'active' AND expires_at > {now}) AS leases) AS counts
    WHERE annotate_pair.id = {pair}
    RETURNING annotate_pair.slots_taken
"""

# The annotator's membership, with what they have submitted in the project: in all, and today. The
# counters are kept by every stored submit (COUNTED_SQL), so this reads one row however much they did:
# counting their leases instead cost 5.6 ms per "next" at 30,000 judgments (measured), and an annotator of
# a 100,000-pair project with overlap 3 and ten annotators makes that many.
PROGRESS_SQL = """
    SELECT m.submitted_total, CASE WHEN m.submitted_day = {today} THEN m.submitted_on_day ELSE 0 END
    FROM annotate_membership m
    WHERE m.project_id = {project} AND m.user_id = {user} AND m.role = 'annotator'
"""

# A stored submit counted on its annotator's membership (in the submit's transaction).
COUNTED_SQL = """
    UPDATE annotate_membership SET
        submitted_total = submitted_total + 1,
        submitted_on_day = CASE WHEN submitted_day = {today} THEN submitted_on_day + 1 ELSE 1 END,
        submitted_day = {today}
    WHERE project_id = {project} AND user_id = {user}
"""

# The lease's state and the judgment this annotator already stored under the idempotency key (if any).
# "j.idempotency_key <> ''" is written out (not "{key} <> ''") so that the partial unique index on
# (annotator, key) serves the lookup in a prepared statement's generic plan too.
LEASE_STATE_SQL = """
    SELECT a.status, a.expires_at,
           (SELECT j.id FROM annotate_judgment j
            WHERE j.idempotency_key <> '' AND j.annotator_id = {user} AND j.idempotency_key = {key})
    FROM annotate_assignment a WHERE a.id = {assignment}
"""

# The judgment itself. Any unique violation (the same key raced in, or this pair already judged) inserts
# nothing, and the caller tells which from EARLIER_SQL.
JUDGMENT_INSERT_SQL = """
    INSERT INTO annotate_judgment
        (pair_id, annotator_id, origin, choice, strength, criteria, rationale, shown_swapped, duration_ms,
         idempotency_key, assignment_id, revision, created_at, updated_at)
    VALUES ({pair}, {user}, 'human', {choice}, {strength}, {criteria}, {rationale}, {shown_swapped},
            {duration_ms}, {key}, {assignment}, 1, {now}, {now})
    ON CONFLICT DO NOTHING
    RETURNING id
"""

EARLIER_SQL = """
    SELECT j.id FROM annotate_judgment j WHERE j.idempotency_key <> '' AND j.annotator_id = {user} AND j.idempotency_key = {key}
"""

SUBMITTED_SQL = (
    "UPDATE annotate_assignment SET status = 'submitted', closed_at = {now} WHERE id = {assignment}"
)

_ARGUMENTS = {
    "project": "p_project",
    "user": "p_user",
    "after": "p_after",
    "token": "p_token",
    "now": "p_now",
    "expires": "v_expires",
    "overlap": "v_overlap",
    "gold": "v_gold",
    "swapped": "v_swapped",
    "today": "p_today",
    "pair": "p_pair",
    "key": "p_key",
    "assignment": "p_assignment",
    "choice": "p_choice",
    "strength": "p_strength",
    "criteria": "p_criteria",
    "rationale": "p_rationale",
    "shown_swapped": "p_shown_swapped",
    "duration_ms": "p_duration_ms",
}


def portable(sql: str, **extra: str) -> str:
    """The fragment with ``%(name)s`` parameters, for the Python path."""
    return sql.format(**{name: f"%({name})s" for name in _ARGUMENTS}, **extra)


def _in_function(sql: str, **extra: str) -> str:
    """The fragment with the functions' names for its parameters (``extra`` names some otherwise)."""
    return sql.format(**{**_ARGUMENTS, **extra})


def _who_asks(*, admin: str) -> str:
    """A function's first step: who asks. A user the web layer authenticated (``p_user``), or an API token
    (``p_token``) checked here, which saves the request a round trip of its own. Sets ``r_user``, and the
    variable named ``admin`` for a token's user; needs ``v_active``."""
    return f"""
    IF p_token <> '' THEN
        {_in_function(TOKEN_USER_SQL).strip()}
        INTO p_user, v_active, {admin};
        IF NOT FOUND OR NOT v_active THEN
            r_outcome := CASE WHEN FOUND THEN 'inactive' ELSE 'bad_token' END;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    r_user := p_user;"""


def _claims() -> str:
    branches = []
    for keyword, name in zip(("IF", "ELSIF", "ELSE"), CLAIM_ORDERS, strict=True):
        condition = "" if keyword == "ELSE" else f" v_order = '{name}' THEN"
        reaches = []
        for reach in CLAIM_REACHES:
            claim = _in_function(claim_statement(name, reach), lock="FOR UPDATE OF p SKIP LOCKED").strip()
            claim = f"{claim}\n    INTO v_assignment, v_pair;"
            reaches.append(claim if not reaches else f"IF v_assignment IS NULL THEN\n{claim}\nEND IF;")
        branches.append(f"{keyword}{condition}\n" + "\n".join(reaches))
    return "\n".join(branches) + "\nEND IF;"


# Every statement of a next or a submit is meant to be an index probe, and PostgreSQL keeps the plans (the
# functions' own, and those of the foreign-key checks run at commit) for the session. Plans made while the
# planner believed a table empty (just after it was emptied and analysed, as in a new deployment or after
# a project's deletion) read leases and judgments with sequential scans, and kept doing so as the tables
# grew: PostgreSQL's time per judgment went 3.5 → 5.1 → 7.2 ms over 1,800 judgments, measured, until the
# next ANALYZE. Sequential scans are off for the rest of the function's transaction, commit included,
# so that these plans probe the indexes whatever the statistics say.
_PROBES_ONLY = "PERFORM set_config('enable_seqscan', 'off', true);"


def _functions() -> list[str]:
    # PL/pgSQL rather than SQL: PostgreSQL keeps a PL/pgSQL function's plans for the session, while it plans
    # a (not inlined) SQL function's statements again on every call.
    recompute = f"""
CREATE FUNCTION palate_pair_slots_recompute(p_pair bigint, p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $function$
DECLARE
    v_taken integer;
BEGIN
    {_in_function(RECOMPUTE_SQL).strip()}
    INTO v_taken;
    RETURN v_taken;
END
$function$"""

    pair_next = f"""
CREATE FUNCTION palate_pair_next(
    p_project bigint, p_user bigint, p_token text, p_admin boolean, p_after bigint, p_now timestamptz,
    p_swap_draw double precision, p_gold_draw double precision, p_today date)
RETURNS TABLE (r_outcome text, r_user bigint, r_role text, r_overlap integer,
               r_assignment bigint, r_pair bigint, r_shown_swapped boolean,
               r_created_at timestamptz, r_expires_at timestamptz, r_prompt text, r_messages jsonb,
               r_left text, r_right text, r_done_total bigint, r_done_today bigint)
LANGUAGE plpgsql AS $function$
DECLARE
    v_active boolean;
    v_overlap integer;
    v_gold_rate double precision;
    v_lease_seconds integer;
    v_order text;
    v_swapped boolean;
    v_expires timestamptz;
    v_assignment bigint;
    v_pair bigint;
    v_gold boolean;
    v_gold_first boolean;
BEGIN
    {_PROBES_ONLY}
{_who_asks(admin="p_admin")}
    {_in_function(PROJECT_ROLE_SQL).strip()}
    INTO v_overlap, v_gold_rate, v_lease_seconds, v_order, r_role;
    IF NOT FOUND OR (r_role IS NULL AND NOT p_admin) THEN
        r_outcome := 'no_project';
        RETURN NEXT;
        RETURN;
    END IF;
    r_overlap := v_overlap;
    IF r_role IS DISTINCT FROM 'annotator' AND NOT p_admin THEN
        r_outcome := 'wrong_role';
        RETURN NEXT;
        RETURN;
    END IF;
    -- One claim at a time per annotator: two tabs asking at once still get one lease. The same
    -- statement reads their progress (a submit of theirs in flight has committed once the lock is granted).
    {_in_function(PROGRESS_SQL).strip()} FOR UPDATE
    INTO r_done_total, r_done_today;
    IF NOT FOUND THEN
        r_outcome := 'not_an_annotator';
        RETURN NEXT;
        RETURN;
    END IF;
    -- A new statement, so a new snapshot: it sees a lease another tab committed while this one waited.
    {_in_function(LIVE_LEASE_SQL).strip()}
    INTO r_assignment, r_pair, r_shown_swapped, r_created_at, r_expires_at;
    IF FOUND THEN
        r_outcome := 'live';
    ELSE
        -- ``assignment._decisions``, made from the caller's random numbers.
        v_swapped := p_swap_draw < 0.5;
        v_gold_first := v_gold_rate > 0 AND p_gold_draw < v_gold_rate;
        v_expires := p_now + make_interval(secs => v_lease_seconds);
        FOREACH v_gold IN ARRAY ARRAY[v_gold_first, NOT v_gold_first] LOOP
{_claims()}
            EXIT WHEN v_assignment IS NOT NULL;
        END LOOP;
        IF v_assignment IS NULL THEN
            r_outcome := 'none';
            RETURN NEXT;
            RETURN;
        END IF;
        PERFORM palate_pair_slots_recompute(v_pair, p_now);
        -- A lease is not a judgment: its commit need not wait for the disk (see the module's docstring).
        PERFORM set_config('synchronous_commit', 'off', true);
        r_outcome := 'claimed';
        r_assignment := v_assignment;
        r_pair := v_pair;
        r_shown_swapped := v_swapped;
        r_created_at := p_now;
        r_expires_at := v_expires;
    END IF;
    SELECT prompt.content, prompt.messages,
           CASE WHEN r_shown_swapped THEN b.content ELSE a.content END,
           CASE WHEN r_shown_swapped THEN a.content ELSE b.content END
    INTO r_prompt, r_messages, r_left, r_right
    FROM annotate_pair pair
    JOIN annotate_prompt prompt ON prompt.id = pair.prompt_id
    JOIN annotate_response a ON a.id = pair.response_a_id
    JOIN annotate_response b ON b.id = pair.response_b_id
    WHERE pair.id = r_pair;
    RETURN NEXT;
END
$function$"""

    # Screen terms (left, right) to the pair's own (a, b), as ``judgments.to_pair_terms``.
    pair_terms = """
CREATE FUNCTION palate_pair_terms(p_choice text, p_swapped boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    SELECT CASE p_choice WHEN 'left' THEN CASE WHEN p_swapped THEN 'b' ELSE 'a' END
                         WHEN 'right' THEN CASE WHEN p_swapped THEN 'a' ELSE 'b' END
                         ELSE p_choice END
$function$"""

    judgment_submit = f"""
CREATE FUNCTION palate_judgment_submit(
    p_assignment bigint, p_user bigint, p_token text, p_key text, p_now timestamptz, p_choice text,
    p_strength integer, p_criteria jsonb, p_rationale text, p_duration_ms integer, p_today date)
RETURNS TABLE (r_outcome text, r_judgment bigint, r_user bigint, r_pair bigint, r_shown_swapped boolean)
LANGUAGE plpgsql AS $function$
DECLARE
    v_active boolean;
    v_admin boolean;
    v_project bigint;
    v_pair bigint;
    v_swapped boolean;
    v_overlap integer;
    v_allowed jsonb;
    v_scale integer;
    v_criteria_asked jsonb;
    v_rationale_mode text;
    v_choice text;
    v_strength integer;
    v_criteria jsonb;
    v_status text;
    v_expires timestamptz;
BEGIN
    {_PROBES_ONLY}
{_who_asks(admin="v_admin")}
    SELECT a.project_id, a.pair_id, a.shown_swapped, p.overlap, p.allowed_choices, p.strength_scale, p.criteria,
           p.rationale
    INTO v_project, v_pair, v_swapped, v_overlap, v_allowed, v_scale, v_criteria_asked, v_rationale_mode
    FROM annotate_assignment a JOIN annotate_project p ON p.id = a.project_id
    WHERE a.id = p_assignment AND a.annotator_id = p_user;
    IF NOT FOUND THEN
        r_outcome := 'no_assignment';
        RETURN NEXT;
        RETURN;
    END IF;
    r_pair := v_pair;
    r_shown_swapped := v_swapped;
    -- The project's configuration, checked as ``judgments.judgment_input_check`` checks it (the caller
    -- has checked what does not depend on it; the tests compare the two checks). The caller tells how.
    IF NOT v_allowed ? p_choice
       OR (v_scale > 0 AND p_strength IS NOT NULL
           AND (p_choice NOT IN ('left', 'right') OR p_strength NOT BETWEEN 1 AND v_scale))
       OR (v_scale = 0 AND p_strength IS NOT NULL)
       OR (jsonb_array_length(v_criteria_asked) > 0 AND (
              ARRAY(SELECT k FROM jsonb_object_keys(p_criteria) k ORDER BY k)
                  <> ARRAY(SELECT DISTINCT c FROM jsonb_array_elements_text(v_criteria_asked) c ORDER BY c)
              OR EXISTS (SELECT 1 FROM jsonb_each_text(p_criteria) e WHERE NOT v_allowed ? e.value)))
       OR (jsonb_array_length(v_criteria_asked) = 0 AND p_criteria <> '{{}}'::jsonb)
       OR (v_rationale_mode = 'required' AND p_rationale = '')
       OR (v_rationale_mode = 'off' AND p_rationale <> '') THEN
        r_outcome := 'invalid';
        RETURN NEXT;
        RETURN;
    END IF;
    v_choice := palate_pair_terms(p_choice, v_swapped);
    v_strength := CASE WHEN p_choice IN ('left', 'right') THEN p_strength END;
    SELECT coalesce(jsonb_object_agg(e.key, palate_pair_terms(e.value, v_swapped)), '{{}}'::jsonb)
    INTO v_criteria FROM jsonb_each_text(p_criteria) e;

    PERFORM 1 FROM annotate_pair WHERE id = v_pair FOR UPDATE;
    -- A new snapshot, taken after the lock: it sees what a concurrent submit committed meanwhile.
    {_in_function(LEASE_STATE_SQL).strip()}
    INTO v_status, v_expires, r_judgment;
    IF r_judgment IS NOT NULL THEN
        r_outcome := 'earlier';
    ELSIF v_status = 'skipped' THEN
        r_outcome := 'skipped';
    ELSIF NOT (v_status = 'active' AND v_expires > p_now)
          AND palate_pair_slots_recompute(v_pair, p_now) >= v_overlap THEN
        r_outcome := 'pair_completed';
    ELSE
        {_in_function(JUDGMENT_INSERT_SQL, pair="v_pair", choice="v_choice", strength="v_strength", criteria="v_criteria", shown_swapped="v_swapped").strip()}
        INTO r_judgment;
        IF r_judgment IS NULL THEN
            -- A concurrent submit with the same key got there first, or the pair was already judged.
            {_in_function(EARLIER_SQL).strip()}
            INTO r_judgment;
            r_outcome := CASE WHEN r_judgment IS NULL THEN 'already_judged' ELSE 'earlier' END;
        ELSE
            {_in_function(SUBMITTED_SQL)};
            {_in_function(COUNTED_SQL, project="v_project").strip()};
            PERFORM palate_pair_slots_recompute(v_pair, p_now);
            r_outcome := 'created';
        END IF;
    END IF;
    RETURN NEXT;
END
$function$"""
    return [recompute, pair_next, pair_terms, judgment_submit]


_DROPS = [
    "DROP FUNCTION IF EXISTS palate_pair_next",
    "DROP FUNCTION IF EXISTS palate_judgment_submit",
    "DROP FUNCTION IF EXISTS palate_pair_slots_recompute",
    "DROP FUNCTION IF EXISTS palate_pair_terms",
]


# The tests turn this off to run the portable statements on PostgreSQL as well.
FUNCTIONS_ENABLED = True


def workspace_functions_used() -> bool:
    """Whether next and submit call the functions (PostgreSQL) or run the portable statements."""
    return FUNCTIONS_ENABLED and connections["default"].vendor == "postgresql"


def install_workspace_functions(*, using: str = "default") -> bool:
    """(Re)creates the functions on a PostgreSQL database; returns False elsewhere (nothing to do)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for statement in [*_DROPS, *_functions()]:
            cursor.execute(statement)
    return True
