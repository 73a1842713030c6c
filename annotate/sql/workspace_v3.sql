-- The annotator's two busiest calls, "next pair" and "submit", each one round trip: a PL/pgSQL function
-- locks, reads, leases or records, recomputes what derives from the rows and answers what the page shows.
-- PL/pgSQL keeps its statements' plans for the session; every statement takes a new snapshot (READ
-- COMMITTED), so "lock the membership (or the pair), then read" sees what a concurrent call committed.
-- Installed by migration annotate 0009, over version 2 (annotate/migrations/sql/, installed by 0006 over
-- version 1). A change is a new file and a new migration; the version it replaces moves beside the
-- migrations. Version 2: a submit adds one to its day's progress instead of counting the day's leases
-- again, refuses a lease that a change of role released, and refuses a deactivated user. Version 3: a
-- claim reads the pairs of its window one by one at their row addresses (palate_pair_claim).

DROP FUNCTION IF EXISTS palate_pair_next;
DROP FUNCTION IF EXISTS palate_judgment_submit;
DROP FUNCTION IF EXISTS palate_judgment_by_key;
DROP FUNCTION IF EXISTS palate_judgment_problems;
DROP FUNCTION IF EXISTS palate_choices_listed;
DROP FUNCTION IF EXISTS palate_pair_claim;
DROP FUNCTION IF EXISTS palate_pair_claim_first;
DROP FUNCTION IF EXISTS palate_pair_open_to;
DROP FUNCTION IF EXISTS palate_progress_recompute;
DROP FUNCTION IF EXISTS palate_pair_slots_recompute;
DROP FUNCTION IF EXISTS palate_project_role;


-- The user's role in a project: 'admin' for site admins, else their membership's role, else NULL.
-- The one definition of a role (annotate.selectors.project_role calls it too).
CREATE FUNCTION palate_project_role(p_project bigint, p_user bigint) RETURNS text
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_role text;
BEGIN
    SELECT CASE WHEN u.is_superuser OR u.is_staff THEN 'admin' ELSE m.role END
    INTO v_role
    FROM auth_user u
    LEFT JOIN annotate_membership m ON m.project_id = p_project AND m.user_id = u.id
    WHERE u.id = p_user AND u.is_active;
    RETURN v_role;
END
$function$;


-- A pair's counters recomputed from its rows (call with the pair's row locked); returns slots_taken.
CREATE FUNCTION palate_pair_slots_recompute(p_pair bigint, p_now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $function$
DECLARE
    v_taken integer;
BEGIN
    UPDATE annotate_pair SET judgment_count = counts.judgments, slots_taken = counts.judgments + counts.leases
    FROM (SELECT
            (SELECT count(*) FROM annotate_judgment WHERE pair_id = p_pair AND origin = 'human') AS judgments,
            (SELECT count(*) FROM annotate_assignment
             WHERE pair_id = p_pair AND status = 'active' AND expires_at > p_now) AS leases) AS counts
    WHERE annotate_pair.id = p_pair
    RETURNING annotate_pair.slots_taken INTO v_taken;
    RETURN v_taken;
END
$function$;


-- Whether the annotator may still be handed the pair: not judged, skipped or leased by them. A function
-- so that each claim below probes these indexes once per pair it looks at.
CREATE FUNCTION palate_pair_open_to(p_pair bigint, p_user bigint, p_project bigint) RETURNS boolean
LANGUAGE plpgsql STABLE AS $function$
BEGIN
    RETURN NOT EXISTS (SELECT 1 FROM annotate_judgment j WHERE j.pair_id = p_pair AND j.annotator_id = p_user)
       AND NOT EXISTS (SELECT 1 FROM annotate_assignment a
                       WHERE a.pair_id = p_pair AND a.annotator_id = p_user AND a.project_id = p_project
                         AND a.status IN ('active', 'skipped'));
END
$function$;


-- The first pair of the window (p_pairs, their row addresses in p_rows, in order) that is open to the
-- annotator and not locked by another claim, locked; NULL when there is none. Each is read at its address,
-- which no statistics can make dearer than a lookup; a row changed since the window was read is passed over
-- (its address is then another row's version, or none visible).
CREATE FUNCTION palate_pair_claim_first(
    p_pairs bigint[], p_rows tid[], p_user bigint, p_project bigint, p_overlap integer) RETURNS bigint
LANGUAGE plpgsql AS $function$
DECLARE
    v_pair bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_pairs, 1), 0) LOOP
        SELECT p.id INTO v_pair FROM annotate_pair p
        WHERE p.ctid = p_rows[i] AND p.id = p_pairs[i] AND p.slots_taken < p_overlap
          AND palate_pair_open_to(p.id, p_user, p_project)
        FOR UPDATE OF p SKIP LOCKED;
        IF v_pair IS NOT NULL THEN
            RETURN v_pair;
        END IF;
    END LOOP;
    RETURN NULL;
END
$function$;


-- The next pair with room for the annotator in the project's fill order, locked (SKIP LOCKED lets
-- concurrent claims pass each other); NULL when there is none. Each order reads its own index, in three
-- reaches: the first 64 open pairs, then the pairs nobody started, then every open pair. Pairs this
-- annotator judged stay open until others judge them and head the depth-first order, so a claim that
-- walked every open pair stepped over all of them. The window is read off the index, then its pairs are
-- read one by one at their row addresses until one is open and free: joined back in one statement, or
-- looked up by key, a planner that believed the table empty (after a project's deletion) scanned a whole
-- index for each pair of the window. slots_taken is checked again on the locked row.
CREATE FUNCTION palate_pair_claim(
    p_order text, p_project bigint, p_user bigint, p_gold boolean, p_overlap integer) RETURNS bigint
LANGUAGE plpgsql AS $function$
DECLARE
    v_pair bigint;
    v_window bigint[];
    v_rows tid[];
BEGIN
    IF p_order = 'breadth_first' THEN
        SELECT array_agg(w.id ORDER BY w.slots_taken, w.id), array_agg(w.ctid ORDER BY w.slots_taken, w.id)
        INTO v_window, v_rows
        FROM (SELECT w.ctid, w.id, w.slots_taken FROM annotate_pair w
              WHERE w.project_id = p_project AND w.is_gold = p_gold AND w.slots_taken < p_overlap
              ORDER BY w.slots_taken, w.id LIMIT 64) AS w;
        v_pair := palate_pair_claim_first(v_window, v_rows, p_user, p_project, p_overlap);
        IF v_pair IS NULL THEN
            SELECT p.id INTO v_pair FROM annotate_pair p
            WHERE p.project_id = p_project AND p.is_gold = p_gold AND p.slots_taken < p_overlap
              AND palate_pair_open_to(p.id, p_user, p_project)
            ORDER BY p.slots_taken, p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
        END IF;
    ELSIF p_order = 'priority' THEN
        SELECT array_agg(w.id ORDER BY w.priority DESC, w.slots_taken DESC, w.id),
               array_agg(w.ctid ORDER BY w.priority DESC, w.slots_taken DESC, w.id)
        INTO v_window, v_rows
        FROM (SELECT w.ctid, w.id, w.priority, w.slots_taken FROM annotate_pair w
              WHERE w.project_id = p_project AND w.is_gold = p_gold AND w.slots_taken < p_overlap
              ORDER BY w.priority DESC, w.slots_taken DESC, w.id LIMIT 64) AS w;
        v_pair := palate_pair_claim_first(v_window, v_rows, p_user, p_project, p_overlap);
        IF v_pair IS NULL THEN
            SELECT p.id INTO v_pair FROM annotate_pair p
            WHERE p.project_id = p_project AND p.is_gold = p_gold AND p.slots_taken = 0
              AND palate_pair_open_to(p.id, p_user, p_project)
            ORDER BY p.priority DESC, p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
        END IF;
        IF v_pair IS NULL THEN
            SELECT p.id INTO v_pair FROM annotate_pair p
            WHERE p.project_id = p_project AND p.is_gold = p_gold AND p.slots_taken < p_overlap
              AND palate_pair_open_to(p.id, p_user, p_project)
            ORDER BY p.priority DESC, p.slots_taken DESC, p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
        END IF;
    ELSE
        SELECT array_agg(w.id ORDER BY w.slots_taken DESC, w.id), array_agg(w.ctid ORDER BY w.slots_taken DESC, w.id)
        INTO v_window, v_rows
        FROM (SELECT w.ctid, w.id, w.slots_taken FROM annotate_pair w
              WHERE w.project_id = p_project AND w.is_gold = p_gold AND w.slots_taken < p_overlap
              ORDER BY w.slots_taken DESC, w.id LIMIT 64) AS w;
        v_pair := palate_pair_claim_first(v_window, v_rows, p_user, p_project, p_overlap);
        IF v_pair IS NULL THEN
            SELECT p.id INTO v_pair FROM annotate_pair p
            WHERE p.project_id = p_project AND p.is_gold = p_gold AND p.slots_taken = 0
              AND palate_pair_open_to(p.id, p_user, p_project)
            ORDER BY p.slots_taken DESC, p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
        END IF;
        IF v_pair IS NULL THEN
            SELECT p.id INTO v_pair FROM annotate_pair p
            WHERE p.project_id = p_project AND p.is_gold = p_gold AND p.slots_taken < p_overlap
              AND palate_pair_open_to(p.id, p_user, p_project)
            ORDER BY p.slots_taken DESC, p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED;
        END IF;
    END IF;
    RETURN v_pair;
END
$function$;


-- The annotator's live lease (other than p_after, the one on their screen), or a new one on the next
-- pair, with what the page shows and their progress. Gold pairs come first with probability gold_rate;
-- the caller draws the random numbers. Outcomes: live, claimed, none; refused: no_project, wrong_role,
-- not_an_annotator.
CREATE FUNCTION palate_pair_next(
    p_project bigint, p_user bigint, p_after bigint, p_now timestamptz,
    p_swap_draw double precision, p_gold_draw double precision, p_today date)
RETURNS TABLE (r_outcome text, r_role text, r_overlap integer,
               r_assignment bigint, r_pair bigint, r_shown_swapped boolean,
               r_created_at timestamptz, r_expires_at timestamptz, r_prompt text, r_messages jsonb,
               r_left text, r_right text, r_done_total bigint, r_done_today bigint)
LANGUAGE plpgsql AS $function$
DECLARE
    v_gold_rate double precision;
    v_lease_seconds integer;
    v_order text;
    v_gold boolean;
    v_gold_first boolean;
BEGIN
    -- Plans made while the planner believed leases and judgments empty kept scanning them as they grew.
    PERFORM set_config('enable_seqscan', 'off', true);
    SELECT p.overlap, p.gold_rate, p.lease_seconds,
           CASE WHEN p.assignment_strategy <> 'fill' THEN 'priority' ELSE p.assignment_order END,
           palate_project_role(p.id, p_user)
    INTO r_overlap, v_gold_rate, v_lease_seconds, v_order, r_role
    FROM annotate_project p WHERE p.id = p_project;
    IF NOT FOUND OR r_role IS NULL THEN
        r_outcome := 'no_project';
        RETURN NEXT;
        RETURN;
    ELSIF r_role NOT IN ('annotator', 'admin') THEN
        r_outcome := 'wrong_role';
        RETURN NEXT;
        RETURN;
    END IF;
    -- One claim at a time per annotator: two tabs asking at once still get one lease.
    PERFORM 1 FROM annotate_membership m
    WHERE m.project_id = p_project AND m.user_id = p_user AND m.role = 'annotator' FOR UPDATE;
    IF NOT FOUND THEN
        r_outcome := 'not_an_annotator';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT coalesce(sum(d.submitted), 0), coalesce(sum(d.submitted) FILTER (WHERE d.day = p_today), 0)
    INTO r_done_total, r_done_today
    FROM annotate_progressday d WHERE d.project_id = p_project AND d.annotator_id = p_user;
    -- A new statement, so a new snapshot: it sees a lease another tab committed while this one waited.
    SELECT a.id, a.pair_id, a.shown_swapped, a.created_at, a.expires_at
    INTO r_assignment, r_pair, r_shown_swapped, r_created_at, r_expires_at
    FROM annotate_assignment a
    WHERE a.annotator_id = p_user AND a.project_id = p_project AND a.status = 'active'
      AND a.expires_at > p_now AND a.id <> p_after
    ORDER BY a.created_at, a.id LIMIT 1;
    IF FOUND THEN
        r_outcome := 'live';
    ELSE
        v_gold_first := v_gold_rate > 0 AND p_gold_draw < v_gold_rate;
        FOREACH v_gold IN ARRAY ARRAY[v_gold_first, NOT v_gold_first] LOOP
            r_pair := palate_pair_claim(v_order, p_project, p_user, v_gold, r_overlap);
            EXIT WHEN r_pair IS NOT NULL;
        END LOOP;
        IF r_pair IS NULL THEN
            r_outcome := 'none';
            RETURN NEXT;
            RETURN;
        END IF;
        r_outcome := 'claimed';
        r_shown_swapped := p_swap_draw < 0.5;
        r_created_at := p_now;
        r_expires_at := p_now + make_interval(secs => v_lease_seconds);
        INSERT INTO annotate_assignment
            (project_id, pair_id, annotator_id, shown_swapped, status, skip_reason, created_at, expires_at)
        VALUES (p_project, r_pair, p_user, r_shown_swapped, 'active', '', p_now, r_expires_at)
        RETURNING id INTO r_assignment;
        PERFORM palate_pair_slots_recompute(r_pair, p_now);
        -- A lease is not a judgment: should the database crash within a fraction of a second, its pair
        -- is handed out again, and the annotator does not wait for a disk flush on every item.
        PERFORM set_config('synchronous_commit', 'off', true);
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
$function$;


-- A project's choices as a message lists them: 'left, right, tie'.
CREATE FUNCTION palate_choices_listed(p_choices jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $function$
    SELECT string_agg(c, ', ' ORDER BY n) FROM jsonb_array_elements_text(p_choices) WITH ORDINALITY AS e(c, n);
$function$;


-- Every way a judgment (in screen terms, its rationale trimmed) breaks the project's configuration, in order, as
-- [[field, message], ...]; empty when it is fine. The one check of a judgment against a project.
CREATE FUNCTION palate_judgment_problems(
    p_project bigint, p_choice text, p_strength integer, p_criteria jsonb, p_rationale text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $function$
DECLARE
    v_allowed jsonb;
    v_scale integer;
    v_asked jsonb;
    v_rationale text;
    v_missing text;
    v_unknown text;
    v_problems jsonb := '[]';
    v_name text;
    v_value text;
BEGIN
    SELECT p.allowed_choices, p.strength_scale, p.criteria, p.rationale
    INTO v_allowed, v_scale, v_asked, v_rationale
    FROM annotate_project p WHERE p.id = p_project;
    IF NOT v_allowed ? p_choice THEN
        v_problems := v_problems || jsonb_build_array(jsonb_build_array('choice',
            format('must be one of %s in this project, got ''%s''', palate_choices_listed(v_allowed), p_choice)));
    END IF;
    IF v_scale = 0 AND p_strength IS NOT NULL THEN
        v_problems := v_problems || '[["strength", "this project does not use a strength scale"]]';
    ELSIF p_strength IS NOT NULL AND p_choice NOT IN ('left', 'right') THEN
        v_problems := v_problems || '[["strength", "only a ''left'' or ''right'' choice has a strength"]]';
    ELSIF p_strength NOT BETWEEN 1 AND v_scale THEN
        v_problems := v_problems || jsonb_build_array(jsonb_build_array('strength',
            format('must be between 1 and %s', v_scale)));
    END IF;
    IF jsonb_array_length(v_asked) = 0 THEN
        IF p_criteria <> '{}' THEN
            v_problems := v_problems
                || '[["criteria", "this project has no criteria; give only the overall choice"]]';
        END IF;
    ELSE
        v_missing := (SELECT string_agg(c, ', ' ORDER BY n) FROM jsonb_array_elements_text(v_asked)
                      WITH ORDINALITY AS e(c, n) WHERE NOT p_criteria ? c);
        IF v_missing IS NOT NULL THEN
            v_problems := v_problems || jsonb_build_array(jsonb_build_array('criteria',
                format('answer every criterion: missing %s', v_missing)));
        END IF;
        v_unknown := (SELECT k FROM jsonb_object_keys(p_criteria) k WHERE NOT v_asked ? k ORDER BY k LIMIT 1);
        IF v_unknown IS NOT NULL THEN
            v_problems := v_problems || jsonb_build_array(jsonb_build_array('criteria',
                format('unknown criterion ''%s''', v_unknown)));
        END IF;
        FOR v_name, v_value IN
            SELECT e.key, e.value FROM jsonb_each_text(p_criteria) e WHERE v_asked ? e.key ORDER BY e.key
        LOOP
            IF NOT v_allowed ? v_value THEN
                v_problems := v_problems || jsonb_build_array(jsonb_build_array('criteria.' || v_name,
                    format('must be one of %s, got ''%s''', palate_choices_listed(v_allowed), v_value)));
            END IF;
        END LOOP;
    END IF;
    IF v_rationale = 'required' AND p_rationale = '' THEN
        v_problems := v_problems || '[["rationale", "a rationale is required in this project"]]';
    ELSIF v_rationale = 'off' AND p_rationale <> '' THEN
        v_problems := v_problems || '[["rationale", "this project does not collect rationales"]]';
    END IF;
    RETURN v_problems;
END
$function$;


-- The judgment the annotator stored under an idempotency key, and whether it answered the same request:
-- the same lease and, as first submitted (before any edit), the same choices. A key belongs to one request.
CREATE FUNCTION palate_judgment_by_key(
    p_user bigint, p_key text, p_assignment bigint, p_choice text, p_strength integer, p_criteria jsonb,
    p_rationale text, OUT r_judgment bigint, OUT r_same boolean)
LANGUAGE plpgsql STABLE AS $function$
BEGIN
    -- "j.idempotency_key <> ''" is written out so that the partial unique index serves a generic plan too.
    SELECT j.id, j.assignment_id IS NOT DISTINCT FROM p_assignment
                 AND (first.choice, first.strength, first.criteria, first.rationale)
                     IS NOT DISTINCT FROM (p_choice, p_strength, p_criteria, p_rationale)
    INTO r_judgment, r_same
    FROM annotate_judgment j
    CROSS JOIN LATERAL (
        SELECT r.choice, r.strength, r.criteria, r.rationale FROM annotate_judgmentrevision r
        WHERE r.judgment_id = j.id AND r.revision = 1
        UNION ALL
        SELECT j.choice, j.strength, j.criteria, j.rationale
        LIMIT 1) AS first
    WHERE p_key <> '' AND j.idempotency_key <> '' AND j.annotator_id = p_user AND j.idempotency_key = p_key;
END
$function$;


-- Stores the judgment for a lease. The caller maps screen terms (left, right) to the pair's own (a, b)
-- both ways, and the lease's shown_swapped picks one (p_*_swapped when B was on the left). Outcomes:
-- created, earlier (the same idempotency key, or a concurrent copy of this submit, stored it), skipped,
-- released (a change of role ended the lease), pair_completed, already_judged, key_reused (the key
-- answered another request); refused: no_assignment, not_an_annotator, invalid (r_problems says how).
CREATE FUNCTION palate_judgment_submit(
    p_assignment bigint, p_user bigint, p_key text, p_now timestamptz, p_today date,
    p_choice text, p_strength integer, p_criteria jsonb, p_rationale text, p_duration_ms integer,
    p_stored_choice text, p_stored_choice_swapped text, p_stored_criteria jsonb,
    p_stored_criteria_swapped jsonb)
RETURNS TABLE (r_outcome text, r_judgment bigint, r_pair bigint, r_shown_swapped boolean, r_problems jsonb)
LANGUAGE plpgsql AS $function$
DECLARE
    v_project bigint;
    v_overlap integer;
    v_status text;
    v_expires timestamptz;
    v_choice text;
    v_criteria jsonb;
    v_same boolean;
BEGIN
    PERFORM set_config('enable_seqscan', 'off', true);
    SELECT a.project_id, a.pair_id, a.shown_swapped, p.overlap
    INTO v_project, r_pair, r_shown_swapped, v_overlap
    FROM annotate_assignment a JOIN annotate_project p ON p.id = a.project_id
    WHERE a.id = p_assignment AND a.annotator_id = p_user;
    IF NOT FOUND THEN
        r_outcome := 'no_assignment';
        RETURN NEXT;
        RETURN;
    END IF;
    -- The caller's role now, not when the lease was made (a deactivated user has none); the lock orders
    -- this annotator's submits.
    PERFORM 1 FROM annotate_membership m
    WHERE m.project_id = v_project AND m.user_id = p_user AND m.role = 'annotator'
      AND palate_project_role(v_project, p_user) IS NOT NULL
    FOR UPDATE;
    IF NOT FOUND THEN
        r_outcome := 'not_an_annotator';
        RETURN NEXT;
        RETURN;
    END IF;
    r_problems := palate_judgment_problems(v_project, p_choice, p_strength, p_criteria, p_rationale);
    IF jsonb_array_length(r_problems) > 0 THEN
        r_outcome := 'invalid';
        RETURN NEXT;
        RETURN;
    END IF;
    v_choice := CASE WHEN r_shown_swapped THEN p_stored_choice_swapped ELSE p_stored_choice END;
    v_criteria := CASE WHEN r_shown_swapped THEN p_stored_criteria_swapped ELSE p_stored_criteria END;
    PERFORM 1 FROM annotate_pair WHERE id = r_pair FOR UPDATE;
    -- New snapshots, taken after the lock: they see what a concurrent submit committed meanwhile.
    SELECT a.status, a.expires_at INTO v_status, v_expires FROM annotate_assignment a WHERE a.id = p_assignment;
    SELECT * INTO r_judgment, v_same
    FROM palate_judgment_by_key(p_user, p_key, p_assignment, v_choice, p_strength, v_criteria, p_rationale);
    IF r_judgment IS NOT NULL THEN
        r_outcome := CASE WHEN v_same THEN 'earlier' ELSE 'key_reused' END;
    ELSIF v_status IN ('skipped', 'released') THEN
        r_outcome := v_status;
    ELSIF NOT (v_status = 'active' AND v_expires > p_now)
          AND palate_pair_slots_recompute(r_pair, p_now) >= v_overlap THEN
        r_outcome := 'pair_completed';
    ELSE
        -- Any unique violation (the same key raced in, or this pair already judged) inserts nothing.
        INSERT INTO annotate_judgment
            (pair_id, annotator_id, origin, choice, strength, criteria, rationale, shown_swapped, duration_ms,
             idempotency_key, assignment_id, revision, created_at, updated_at)
        VALUES (r_pair, p_user, 'human', v_choice, p_strength, v_criteria, p_rationale, r_shown_swapped,
                p_duration_ms, p_key, p_assignment, 1, p_now, p_now)
        ON CONFLICT DO NOTHING
        RETURNING id INTO r_judgment;
        IF r_judgment IS NULL THEN
            SELECT * INTO r_judgment, v_same
            FROM palate_judgment_by_key(p_user, p_key, p_assignment, v_choice, p_strength, v_criteria, p_rationale);
            r_outcome := CASE WHEN r_judgment IS NULL THEN 'already_judged'
                              WHEN v_same THEN 'earlier' ELSE 'key_reused' END;
        ELSE
            UPDATE annotate_assignment SET status = 'submitted', closed_at = p_now WHERE id = p_assignment;
            -- One more on the day's progress line; the membership lock orders this annotator's submits.
            INSERT INTO annotate_progressday (project_id, annotator_id, day, submitted)
            VALUES (v_project, p_user, p_today, 1)
            ON CONFLICT (project_id, annotator_id, day) DO UPDATE SET submitted = annotate_progressday.submitted + 1;
            PERFORM palate_pair_slots_recompute(r_pair, p_now);
            r_outcome := 'created';
        END IF;
    END IF;
    RETURN NEXT;
END
$function$;
