/**
 * The schema of the SQL stores (PGlite and a PostgreSQL server share it) as an ordered list of versioned migrations,
 * and the function that applies the pending ones when a store opens.
 *
 * Applying. `migrate` runs in one transaction that first takes a transaction-level advisory lock of the schema
 * (`pg_advisory_xact_lock`), so that nodes starting together apply each migration once: the others wait, then find
 * it done. The applied versions are rows of `<schema>.schema_migrations`. A schema at a version newer than this code
 * knows (a newer release ran against it) is refused with a ValidationError saying to upgrade: older code must not
 * write to a schema it does not understand. A migration, once released, never changes: a change is a new version.
 *
 * The tables. Times are `bigint` epoch milliseconds, as the RunStore interface has them (`created_at` and event
 * `at` are the writing node's clock; leases, `updated_at` and the store's own events are the database's clock,
 * `now_ms()`). Run ids use the "C" collation so that pages and ties order the same on every server.
 * - `runs`: one row per run; `requires` (from the task) and `priority` are columns so that a claim filters and orders
 *   on an index (`requires <@ capabilities`); `max_attempts` is the task's, for the recovery limit.
 * - `run_events`: the timelines; `seq` is a sequence, so increasing across the store; deleted with their run.
 * - `nodes`: each node's lease (`lease_until`, epoch ms on the database's clock).
 * - `steps` (version 2): a workflow run's steps by (`run_id`, `seq`); `signals`: the signals sent to runs, `id` a
 *   sequence (the order of delivery), `consumed_by` the step that consumed one. Both deleted with their run.
 *   `schedule_ticks`: each schedule's last tick.
 * - Functions: `insert_runs`, `append_events`, `claim_runs`, `leave_node`, and from version 2 `checkpoint_steps`,
 *   `park_runs`, `signal_run` run each store operation as one statement (one round trip, one transaction, however
 *   many runs); `write_steps` is their upsert of steps; `notify_finished` sends the ids of ended runs on the
 *   schema's channel (`<schema>_finished`), packed into notifications under PostgreSQL's 8000-byte limit.
 */
import { ValidationError } from '../errors.js';
import type { SqlTransaction } from './sql/executor.js';

/** One version of the schema. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  /** The statements, for the schema `s` (a quoted identifier) and its notification channel `channel`. */
  sql(names: SchemaNames): string;
}

/** The names a migration is written against. */
export interface SchemaNames {
  /** The schema, quoted: `"unified_orchestrator"`. */
  readonly s: string;
  /** The notification channel of finished runs, as a string literal: `'unified_orchestrator_finished'`. */
  readonly channel: string;
  /** The message of a run dead-lettered by recoveries, as a `format()` pattern literal (`%s`: the count). */
  readonly deadLetterMessage: string;
}

const LIVE = `('queued', 'running')`;
const TERMINAL = `('completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered')`;

/**
 * When a run of `runs` (columns qualified by `q`) is due for a claim, as one bigint the claim compares with now: its
 * not_before; with no not_before, 0 (at once) unless it waits for a signal, then never (the largest bigint).
 * Migration 2 indexes this expression and its claim filters on it: it is part of that migration and never changes.
 */
export function dueAt(q: string): string {
  return `CASE WHEN cardinality(${q}waiting_for) = 0 THEN coalesce(${q}not_before, 0) ELSE coalesce(${q}not_before, 9223372036854775807) END`;
}
const DUE = dueAt('');
const DUE_X = dueAt('x.');

/**
 * The predicate of migration 2's claim index: not a run waiting for a signal with no time (never due until one). Part
 * of that migration, as dueAt is.
 */
export function claimable(q: string): string {
  return `(cardinality(${q}waiting_for) = 0 OR ${q}not_before IS NOT NULL)`;
}
const CLAIMABLE = claimable('');
const CLAIMABLE_X = claimable('x.');

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, run events, node leases',
    sql: ({ s, channel, deadLetterMessage }) => `
CREATE FUNCTION ${s}.now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS
  $f$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $f$;

CREATE TABLE ${s}.runs (
  id text COLLATE "C" PRIMARY KEY,
  type text NOT NULL,
  tenant_id text,
  idempotency_key text,
  status text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'timed-out', 'dead-lettered')),
  task jsonb NOT NULL,
  requires text[] NOT NULL,
  priority double precision NOT NULL,
  max_attempts integer NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  recoveries integer NOT NULL DEFAULT 0,
  owner text,
  result jsonb,
  error jsonb,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  finished_at bigint
);
-- Idempotency keys: unique per tenant among live and completed runs.
CREATE UNIQUE INDEX runs_idempotency ON ${s}.runs ((coalesce(tenant_id, '')), idempotency_key)
  WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'running', 'completed');
-- list by key (the legacy adapter finds a caller's own task id), whatever the run's status.
CREATE INDEX runs_key ON ${s}.runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- claim: live runs by priority, then age.
CREATE INDEX runs_claim ON ${s}.runs (priority DESC, created_at, id) WHERE status IN ${LIVE};
-- leave, and claim's look at owners.
CREATE INDEX runs_owner ON ${s}.runs (owner) WHERE status IN ${LIVE};
-- list: newest first, all tenants or one.
CREATE INDEX runs_list ON ${s}.runs (created_at DESC, id DESC);
CREATE INDEX runs_tenant_list ON ${s}.runs (tenant_id, created_at DESC, id DESC);
-- prune and deadLetters: terminal runs by when they ended.
CREATE INDEX runs_finished ON ${s}.runs (finished_at, id) WHERE status IN ${TERMINAL};

CREATE TABLE ${s}.run_events (
  seq bigserial PRIMARY KEY,
  run_id text COLLATE "C" NOT NULL REFERENCES ${s}.runs (id) ON DELETE CASCADE,
  at bigint NOT NULL,
  kind text NOT NULL,
  attempt integer,
  agent_id text,
  node_id text,
  error jsonb,
  detail jsonb
);
CREATE INDEX run_events_run ON ${s}.run_events (run_id, seq);

CREATE TABLE ${s}.nodes (
  id text PRIMARY KEY,
  lease_until bigint NOT NULL
);

CREATE FUNCTION ${s}.notify_finished(p_ids text[]) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  v_id text;
  v_chunk text[] := '{}';
  v_size integer := 2;
  v_len integer;
BEGIN
  FOREACH v_id IN ARRAY p_ids LOOP
    v_len := octet_length(to_json(v_id)::text) + 1;
    -- An id too long to notify is left to the callers' polling.
    CONTINUE WHEN v_len > 7000;
    IF v_size + v_len > 7800 THEN
      PERFORM pg_notify(${channel}, array_to_json(v_chunk)::text);
      v_chunk := '{}';
      v_size := 2;
    END IF;
    v_chunk := v_chunk || v_id;
    v_size := v_size + v_len;
  END LOOP;
  IF cardinality(v_chunk) > 0 THEN
    PERFORM pg_notify(${channel}, array_to_json(v_chunk)::text);
  END IF;
END $f$;

-- Inserts the runs of p_runs (a JSON array of {ord, id, type, tenantId, idempotencyKey, task, createdAt}) owned
-- by p_node, each with a queued event; returns the duplicates: (ord, the run holding the key).
CREATE FUNCTION ${s}.insert_runs(p_node text, p_runs jsonb)
RETURNS TABLE (dup_ord integer, existing jsonb) LANGUAGE plpgsql AS $f$
DECLARE
  v_inserted text[];
  v_pending jsonb := p_runs;
  v_row record;
  v_existing ${s}.runs;
  v_again jsonb;
BEGIN
  FOR v_try IN 1..5 LOOP
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(v_pending) AS x(
        ord integer, id text, type text, "tenantId" text, "idempotencyKey" text, task jsonb, "createdAt" bigint)
    ), ins AS (
      INSERT INTO ${s}.runs AS r (id, type, tenant_id, idempotency_key, status, task, requires, priority,
                                  max_attempts, owner, created_at, updated_at)
      SELECT i.id, i.type, i."tenantId", i."idempotencyKey", 'queued', i.task,
             ARRAY(SELECT jsonb_array_elements_text(i.task -> 'requires')),
             (i.task ->> 'priority')::double precision, coalesce((i.task ->> 'maxAttempts')::integer, 1),
             p_node, i."createdAt", i."createdAt"
      FROM input i ORDER BY i.ord
      ON CONFLICT ((coalesce(tenant_id, '')), idempotency_key)
        WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'running', 'completed')
        DO NOTHING
      RETURNING r.id, r.created_at
    ), ev AS (
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id)
      SELECT ins.id, ins.created_at, 'queued', p_node FROM ins JOIN input i ON i.id = ins.id ORDER BY i.ord
    )
    SELECT coalesce(array_agg(ins.id), '{}') INTO v_inserted FROM ins;

    v_again := '[]';
    FOR v_row IN
      SELECT * FROM jsonb_to_recordset(v_pending) AS x(ord integer, id text, "tenantId" text, "idempotencyKey" text)
      WHERE NOT (x.id = ANY (v_inserted)) ORDER BY x.ord
    LOOP
      SELECT * INTO v_existing FROM ${s}.runs r
      WHERE coalesce(r.tenant_id, '') = coalesce(v_row."tenantId", '') AND r.idempotency_key = v_row."idempotencyKey"
        AND r.status IN ('queued', 'running', 'completed');
      IF FOUND THEN
        dup_ord := v_row.ord;
        existing := to_jsonb(v_existing);
        RETURN NEXT;
      ELSE
        -- The holder of the key ended (or was pruned) since: insert this one again.
        v_again := v_again || (SELECT e FROM jsonb_array_elements(v_pending) e WHERE (e ->> 'ord')::integer = v_row.ord);
      END IF;
    END LOOP;
    IF jsonb_array_length(v_again) = 0 THEN
      RETURN;
    END IF;
    v_pending := v_again;
  END LOOP;
  -- Keys changing hands this often under us: let the caller run the whole insert again.
  RAISE EXCEPTION 'idempotency keys kept changing hands during the insert' USING ERRCODE = '40001';
END $f$;

-- Appends the events of p_events (a JSON array, in order) and moves their runs (see RunEventInput).
CREATE FUNCTION ${s}.append_events(p_events jsonb) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
  v_event record;
  v_status text;
  v_owner text;
  v_finished text[] := '{}';
BEGIN
  -- Every run of the batch locked up front, in one order, so that two batches cannot deadlock.
  PERFORM 1 FROM ${s}.runs r
  WHERE r.id IN (SELECT e ->> 'runId' FROM jsonb_array_elements(p_events) e)
  ORDER BY r.id FOR UPDATE;
  FOR v_event IN
    SELECT * FROM jsonb_to_recordset(p_events) AS x(
      ord integer, "runId" text, kind text, at bigint, "nodeId" text, attempt integer, "agentId" text,
      error jsonb, detail jsonb, result jsonb)
    ORDER BY x.ord
  LOOP
    SELECT r.status, r.owner INTO v_status, v_owner FROM ${s}.runs r WHERE r.id = v_event."runId";
    CONTINUE WHEN NOT FOUND;
    IF v_event.kind IN ${TERMINAL} THEN
      -- The first end wins; later ones are not recorded.
      CONTINUE WHEN v_status NOT IN ${LIVE};
      UPDATE ${s}.runs SET
        status = v_event.kind,
        result = CASE WHEN v_event.kind = 'completed' THEN v_event.result END,
        error = CASE WHEN v_event.kind = 'completed' THEN NULL ELSE v_event.error END,
        finished_at = v_event.at,
        updated_at = v_now
      WHERE id = v_event."runId";
      v_finished := v_finished || v_event."runId";
    ELSIF v_owner = v_event."nodeId" AND v_status IN ${LIVE} THEN
      UPDATE ${s}.runs SET
        status = CASE WHEN v_event.kind = 'started' THEN 'running' ELSE 'queued' END,
        attempts = CASE WHEN v_event.kind = 'started' THEN coalesce(v_event.attempt, attempts) ELSE attempts END,
        owner = CASE WHEN v_event.kind = 'released' THEN NULL ELSE owner END,
        updated_at = v_now
      WHERE id = v_event."runId";
    END IF;
    INSERT INTO ${s}.run_events (run_id, at, kind, attempt, agent_id, node_id, error, detail)
    VALUES (v_event."runId", v_event.at, v_event.kind, v_event.attempt, v_event."agentId", v_event."nodeId",
            v_event.error, v_event.detail);
  END LOOP;
  PERFORM ${s}.notify_finished(v_finished);
END $f$;

-- Takes over live runs that p_caps cover and that no node owns or whose owner has no lease left: highest priority
-- first, then oldest, skipping rows another claim holds; up to p_limit adopted (dead-lettered ones not counted).
CREATE FUNCTION ${s}.claim_runs(p_node text, p_limit integer, p_caps text[], p_max_recoveries integer,
                                 p_from text)
RETURNS TABLE (dead boolean, run jsonb) LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
  v_run ${s}.runs;
  v_from text;
  v_taken integer := 0;
  v_dead text[] := '{}';
BEGIN
  FOR v_run IN
    SELECT * FROM ${s}.runs x
    WHERE x.status IN ${LIVE} AND x.requires <@ p_caps
      AND (p_from IS NULL OR x.owner = p_from)
      AND (x.owner IS NULL
           OR NOT EXISTS (SELECT 1 FROM ${s}.nodes n WHERE n.id = x.owner AND n.lease_until > v_now))
    ORDER BY x.priority DESC, x.created_at, x.id
    FOR UPDATE OF x SKIP LOCKED
  LOOP
    v_from := v_run.owner;
    IF v_from IS NOT NULL AND v_run.recoveries + 1 >= greatest(p_max_recoveries, v_run.max_attempts) THEN
      UPDATE ${s}.runs SET
        status = 'dead-lettered', owner = p_node, recoveries = recoveries + 1,
        error = jsonb_build_object('name', 'TaskDeadLetteredError',
                                   'message', format(${deadLetterMessage}, recoveries + 1),
                                   'code', 'TASK_DEAD_LETTERED'),
        result = NULL, finished_at = v_now, updated_at = v_now
      WHERE id = v_run.id RETURNING * INTO v_run;
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id, error, detail)
      VALUES (v_run.id, v_now, 'dead-lettered', p_node, v_run.error,
              jsonb_build_object('from', v_from, 'recoveries', v_run.recoveries));
      v_dead := v_dead || v_run.id;
      dead := true;
      run := to_jsonb(v_run);
      RETURN NEXT;
    ELSE
      UPDATE ${s}.runs SET
        owner = p_node, status = 'queued',
        recoveries = recoveries + CASE WHEN v_from IS NULL THEN 0 ELSE 1 END,
        updated_at = v_now
      WHERE id = v_run.id RETURNING * INTO v_run;
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id, detail)
      VALUES (v_run.id, v_now, 'adopted', p_node, jsonb_build_object('from', v_from));
      dead := false;
      run := to_jsonb(v_run);
      RETURN NEXT;
      v_taken := v_taken + 1;
      EXIT WHEN v_taken >= p_limit;
    END IF;
  END LOOP;
  PERFORM ${s}.notify_finished(v_dead);
END $f$;

-- Ends p_node's lease and gives back its live runs, each with a released event.
CREATE FUNCTION ${s}.leave_node(p_node text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
BEGIN
  DELETE FROM ${s}.nodes WHERE id = p_node;
  PERFORM 1 FROM ${s}.runs r WHERE r.owner = p_node AND r.status IN ${LIVE} ORDER BY r.id FOR UPDATE;
  WITH released AS (
    UPDATE ${s}.runs SET owner = NULL, status = 'queued', updated_at = v_now
    WHERE owner = p_node AND status IN ${LIVE}
    RETURNING id
  )
  INSERT INTO ${s}.run_events (run_id, at, kind, node_id)
  SELECT released.id, v_now, 'released', p_node FROM released ORDER BY released.id;
END $f$;
`,
  },
  {
    version: 2,
    name: 'workflows: steps, signals, schedule ticks; runs not before a time or waiting for signals; cost and agent of a run',
    sql: ({ s, deadLetterMessage }) => `
ALTER TABLE ${s}.runs
  ADD COLUMN not_before bigint,
  ADD COLUMN waiting_for text[] NOT NULL DEFAULT '{}',
  ADD COLUMN cost double precision NOT NULL DEFAULT 0,
  ADD COLUMN agent_id text;

-- claim: live runs, workflow runs apart from the others, by priority then age; the last column is when the run is
-- due (dueAt in migrations.ts), so that a claim passes over runs not due inside the index, without reading them.
-- A run waiting for a signal with no time is not in it at all (claimable in migrations.ts): only a signal wakes it.
DROP INDEX ${s}.runs_claim;
CREATE INDEX runs_claim ON ${s}.runs (((type LIKE 'workflow:%')::integer), priority DESC, created_at, id, (${DUE}))
  WHERE status IN ${LIVE} AND ${CLAIMABLE};

CREATE TABLE ${s}.steps (
  run_id text COLLATE "C" NOT NULL REFERENCES ${s}.runs (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  name text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('task', 'step', 'signal', 'sleep')),
  status text NOT NULL CHECK (status IN ('running', 'waiting', 'completed', 'failed')),
  result jsonb,
  error jsonb,
  cost double precision NOT NULL DEFAULT 0,
  child_id text,
  agent_id text,
  attempts integer NOT NULL DEFAULT 0,
  started_at bigint NOT NULL,
  ended_at bigint,
  wake_at bigint,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE ${s}.signals (
  id bigserial PRIMARY KEY,
  run_id text COLLATE "C" NOT NULL REFERENCES ${s}.runs (id) ON DELETE CASCADE,
  name text NOT NULL,
  payload jsonb,
  actor text,
  at bigint NOT NULL,
  consumed_by integer
);
-- history, park's look for an unconsumed signal, and prune's cascade.
CREATE INDEX signals_run ON ${s}.signals (run_id, id);

-- Each schedule's last tick (lastTick, recordTick): the latest recorded stays.
CREATE TABLE ${s}.schedule_ticks (
  name text PRIMARY KEY,
  tick bigint NOT NULL
);

-- As in version 1, and: a run with notBefore is inserted with no owner; a run id already stored is a duplicate of
-- that run (whatever its status), not an error.
CREATE OR REPLACE FUNCTION ${s}.insert_runs(p_node text, p_runs jsonb)
RETURNS TABLE (dup_ord integer, existing jsonb) LANGUAGE plpgsql AS $f$
DECLARE
  v_inserted text[];
  v_pending jsonb := p_runs;
  v_row record;
  v_existing ${s}.runs;
  v_again jsonb;
BEGIN
  FOR v_try IN 1..5 LOOP
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(v_pending) AS x(
        ord integer, id text, type text, "tenantId" text, "idempotencyKey" text, task jsonb, "createdAt" bigint,
        "notBefore" bigint)
    ), ins AS (
      INSERT INTO ${s}.runs AS r (id, type, tenant_id, idempotency_key, status, task, requires, priority,
                                  max_attempts, owner, created_at, updated_at, not_before)
      SELECT i.id, i.type, i."tenantId", i."idempotencyKey", 'queued', i.task,
             ARRAY(SELECT jsonb_array_elements_text(i.task -> 'requires')),
             (i.task ->> 'priority')::double precision, coalesce((i.task ->> 'maxAttempts')::integer, 1),
             CASE WHEN i."notBefore" IS NULL THEN p_node END, i."createdAt", i."createdAt", i."notBefore"
      FROM input i ORDER BY i.ord
      -- Either conflict: the run id (the primary key), or the idempotency key (runs_idempotency).
      ON CONFLICT DO NOTHING
      RETURNING r.id, r.created_at
    ), ev AS (
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id)
      SELECT ins.id, ins.created_at, 'queued', p_node FROM ins JOIN input i ON i.id = ins.id ORDER BY i.ord
    )
    SELECT coalesce(array_agg(ins.id), '{}') INTO v_inserted FROM ins;

    v_again := '[]';
    FOR v_row IN
      SELECT * FROM jsonb_to_recordset(v_pending) AS x(ord integer, id text, "tenantId" text, "idempotencyKey" text)
      WHERE NOT (x.id = ANY (v_inserted)) ORDER BY x.ord
    LOOP
      SELECT * INTO v_existing FROM ${s}.runs r WHERE r.id = v_row.id;
      IF NOT FOUND THEN
        SELECT * INTO v_existing FROM ${s}.runs r
        WHERE coalesce(r.tenant_id, '') = coalesce(v_row."tenantId", '')
          AND r.idempotency_key = v_row."idempotencyKey" AND r.status IN ('queued', 'running', 'completed');
      END IF;
      IF FOUND THEN
        dup_ord := v_row.ord;
        existing := to_jsonb(v_existing);
        RETURN NEXT;
      ELSE
        -- The holder of the key ended (or was pruned) since: insert this one again.
        v_again := v_again || (SELECT e FROM jsonb_array_elements(v_pending) e WHERE (e ->> 'ord')::integer = v_row.ord);
      END IF;
    END LOOP;
    IF jsonb_array_length(v_again) = 0 THEN
      RETURN;
    END IF;
    v_pending := v_again;
  END LOOP;
  -- Keys changing hands this often under us: let the caller run the whole insert again.
  RAISE EXCEPTION 'idempotency keys kept changing hands during the insert' USING ERRCODE = '40001';
END $f$;

-- As in version 1, and: a terminal event sets the run's cost and agent, and clears notBefore and waitingFor.
CREATE OR REPLACE FUNCTION ${s}.append_events(p_events jsonb) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
  v_event record;
  v_status text;
  v_owner text;
  v_finished text[] := '{}';
BEGIN
  -- Every run of the batch locked up front, in one order, so that two batches cannot deadlock.
  PERFORM 1 FROM ${s}.runs r
  WHERE r.id IN (SELECT e ->> 'runId' FROM jsonb_array_elements(p_events) e)
  ORDER BY r.id FOR UPDATE;
  FOR v_event IN
    SELECT * FROM jsonb_to_recordset(p_events) AS x(
      ord integer, "runId" text, kind text, at bigint, "nodeId" text, attempt integer, "agentId" text,
      error jsonb, detail jsonb, result jsonb, cost double precision)
    ORDER BY x.ord
  LOOP
    SELECT r.status, r.owner INTO v_status, v_owner FROM ${s}.runs r WHERE r.id = v_event."runId";
    CONTINUE WHEN NOT FOUND;
    IF v_event.kind IN ${TERMINAL} THEN
      -- The first end wins; later ones are not recorded.
      CONTINUE WHEN v_status NOT IN ${LIVE};
      UPDATE ${s}.runs SET
        status = v_event.kind,
        result = CASE WHEN v_event.kind = 'completed' THEN v_event.result END,
        error = CASE WHEN v_event.kind = 'completed' THEN NULL ELSE v_event.error END,
        cost = coalesce(v_event.cost, 0),
        agent_id = v_event."agentId",
        not_before = NULL,
        waiting_for = '{}',
        finished_at = v_event.at,
        updated_at = v_now
      WHERE id = v_event."runId";
      v_finished := v_finished || v_event."runId";
    ELSIF v_owner = v_event."nodeId" AND v_status IN ${LIVE} THEN
      UPDATE ${s}.runs SET
        status = CASE WHEN v_event.kind = 'started' THEN 'running' ELSE 'queued' END,
        attempts = CASE WHEN v_event.kind = 'started' THEN coalesce(v_event.attempt, attempts) ELSE attempts END,
        owner = CASE WHEN v_event.kind = 'released' THEN NULL ELSE owner END,
        updated_at = v_now
      WHERE id = v_event."runId";
    END IF;
    INSERT INTO ${s}.run_events (run_id, at, kind, attempt, agent_id, node_id, error, detail)
    VALUES (v_event."runId", v_event.at, v_event.kind, v_event.attempt, v_event."agentId", v_event."nodeId",
            v_event.error, v_event.detail);
  END LOOP;
  PERFORM ${s}.notify_finished(v_finished);
END $f$;

-- As claim_runs of version 1, and: only workflow runs (p_workflows) or only the others; only runs that are due;
-- an adopted run's not_before and waiting_for cleared. The candidates are a cursor (PL/pgSQL plans a cursor for its
-- first rows) over the runs_claim index, in its order: a claim reads the rows it takes and the few it passes over,
-- not every due run.
CREATE FUNCTION ${s}.claim_runs(p_node text, p_limit integer, p_caps text[], p_max_recoveries integer,
                                p_from text, p_workflows boolean)
RETURNS TABLE (dead boolean, run jsonb) LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
  v_run ${s}.runs;
  v_from text;
  v_taken integer := 0;
  v_dead text[] := '{}';
  -- An integer, not the boolean: a planner folds "boolean = false" into NOT, which the index does not match.
  v_kind integer := CASE WHEN p_workflows THEN 1 ELSE 0 END;
  c_candidates CURSOR FOR
    SELECT * FROM ${s}.runs x
    WHERE x.status IN ${LIVE} AND ${CLAIMABLE_X} AND (x.type LIKE 'workflow:%')::integer = v_kind
      AND (${DUE_X}) <= v_now
      AND (x.requires <@ p_caps OR (p_caps IS NULL AND p_from IS NOT NULL))
      AND (p_from IS NULL OR x.owner = p_from)
      AND (x.owner IS NULL
           OR NOT EXISTS (SELECT 1 FROM ${s}.nodes n WHERE n.id = x.owner AND n.lease_until > v_now))
    ORDER BY x.priority DESC, x.created_at, x.id
    FOR UPDATE OF x SKIP LOCKED;
BEGIN
  FOR v_candidate IN c_candidates
  LOOP
    v_run := v_candidate;
    v_from := v_run.owner;
    IF v_from IS NOT NULL AND v_run.recoveries + 1 >= greatest(p_max_recoveries, v_run.max_attempts) THEN
      UPDATE ${s}.runs SET
        status = 'dead-lettered', owner = p_node, recoveries = recoveries + 1,
        error = jsonb_build_object('name', 'TaskDeadLetteredError',
                                   'message', format(${deadLetterMessage}, recoveries + 1),
                                   'code', 'TASK_DEAD_LETTERED'),
        result = NULL, finished_at = v_now, updated_at = v_now
      WHERE id = v_run.id RETURNING * INTO v_run;
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id, error, detail)
      VALUES (v_run.id, v_now, 'dead-lettered', p_node, v_run.error,
              jsonb_build_object('from', v_from, 'recoveries', v_run.recoveries));
      v_dead := v_dead || v_run.id;
      dead := true;
      run := to_jsonb(v_run);
      RETURN NEXT;
    ELSE
      UPDATE ${s}.runs SET
        owner = p_node, status = 'queued',
        recoveries = recoveries + CASE WHEN v_from IS NULL THEN 0 ELSE 1 END,
        not_before = NULL, waiting_for = '{}',
        updated_at = v_now
      WHERE id = v_run.id RETURNING * INTO v_run;
      INSERT INTO ${s}.run_events (run_id, at, kind, node_id, detail)
      VALUES (v_run.id, v_now, 'adopted', p_node, jsonb_build_object('from', v_from));
      dead := false;
      run := to_jsonb(v_run);
      RETURN NEXT;
      v_taken := v_taken + 1;
      EXIT WHEN v_taken >= p_limit;
    END IF;
  END LOOP;
  PERFORM ${s}.notify_finished(v_dead);
END $f$;

-- Version 1's claim, for a node of the previous release still running while the schema moves on: it claims the
-- runs that are not workflow runs, when they are due.
CREATE OR REPLACE FUNCTION ${s}.claim_runs(p_node text, p_limit integer, p_caps text[], p_max_recoveries integer,
                                           p_from text)
RETURNS TABLE (dead boolean, run jsonb) LANGUAGE sql AS $f$
  SELECT * FROM ${s}.claim_runs(p_node, p_limit, p_caps, p_max_recoveries, p_from, false)
$f$;

-- Upserts the steps of p_steps (a JSON array of StepInput with ord), in order, by (runId, seq): an ended step
-- (completed or failed) stays. A step written with a signalId consumes that signal of its run, if unconsumed.
-- The caller has checked that the runs are the writing node's.
CREATE FUNCTION ${s}.write_steps(p_steps jsonb) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  v_step record;
BEGIN
  FOR v_step IN
    SELECT * FROM jsonb_to_recordset(p_steps) AS x(
      ord integer, "runId" text, seq integer, name text, kind text, status text, result jsonb, error jsonb,
      cost double precision, "childId" text, "agentId" text, attempts integer, "startedAt" bigint, "endedAt" bigint,
      "wakeAt" bigint, "signalId" bigint)
    ORDER BY x.ord
  LOOP
    INSERT INTO ${s}.steps AS t (run_id, seq, name, kind, status, result, error, cost, child_id, agent_id, attempts,
                                 started_at, ended_at, wake_at)
    VALUES (v_step."runId", v_step.seq, v_step.name, v_step.kind, v_step.status,
            CASE WHEN v_step.status = 'completed' THEN v_step.result END, v_step.error,
            coalesce(v_step.cost, 0), v_step."childId", v_step."agentId", coalesce(v_step.attempts, 0),
            v_step."startedAt", v_step."endedAt", v_step."wakeAt")
    ON CONFLICT (run_id, seq) DO UPDATE SET
      name = excluded.name, kind = excluded.kind, status = excluded.status, result = excluded.result,
      error = excluded.error, cost = excluded.cost, child_id = excluded.child_id, agent_id = excluded.agent_id,
      attempts = excluded.attempts, started_at = excluded.started_at, ended_at = excluded.ended_at,
      wake_at = excluded.wake_at
    WHERE t.status NOT IN ('completed', 'failed');
    IF FOUND AND v_step."signalId" IS NOT NULL THEN
      UPDATE ${s}.signals SET consumed_by = v_step.seq
      WHERE id = v_step."signalId" AND run_id = v_step."runId" AND consumed_by IS NULL;
    END IF;
  END LOOP;
END $f$;

-- checkpoint: writes the steps of runs p_node owns and that are live; returns the other runs' ids (the node lost
-- them), each once, in the order of their first step.
CREATE FUNCTION ${s}.checkpoint_steps(p_node text, p_steps jsonb) RETURNS text[] LANGUAGE plpgsql AS $f$
DECLARE
  v_refused text[];
BEGIN
  -- The runs held (their owner cannot change under the writes), in one order against deadlocks.
  PERFORM 1 FROM ${s}.runs r
  WHERE r.id IN (SELECT e ->> 'runId' FROM jsonb_array_elements(p_steps) e)
  ORDER BY r.id FOR SHARE;
  SELECT coalesce(array_agg(x.id ORDER BY x.first), '{}') INTO v_refused
  FROM (SELECT e ->> 'runId' AS id, min(o) AS first
        FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS a(e, o) GROUP BY 1) x
  WHERE NOT EXISTS (SELECT 1 FROM ${s}.runs r WHERE r.id = x.id AND r.owner = p_node AND r.status IN ${LIVE});
  PERFORM ${s}.write_steps(coalesce(
    (SELECT jsonb_agg(e ORDER BY o) FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS a(e, o)
     WHERE NOT (e ->> 'runId' = ANY (v_refused))),
    '[]'));
  RETURN v_refused;
END $f$;

-- park: for each park of p_parks (a JSON array of ParkInput with ord), in order, 'lost' (not the node's, or ended:
-- nothing written), 'signalled' (its steps written; an unconsumed signal of a waited name is there: not parked) or
-- 'parked' (its steps written; no owner, queued, not_before and waiting_for set, a parked event).
CREATE FUNCTION ${s}.park_runs(p_parks jsonb) RETURNS text[] LANGUAGE plpgsql AS $f$
DECLARE
  v_now bigint := ${s}.now_ms();
  v_park record;
  v_status text;
  v_owner text;
  v_outcomes text[] := '{}';
BEGIN
  PERFORM 1 FROM ${s}.runs r
  WHERE r.id IN (SELECT e ->> 'runId' FROM jsonb_array_elements(p_parks) e)
  ORDER BY r.id FOR UPDATE;
  FOR v_park IN
    SELECT * FROM jsonb_to_recordset(p_parks) AS x(
      ord integer, "runId" text, "nodeId" text, at bigint, "notBefore" bigint, "waitingFor" text[], steps jsonb)
    ORDER BY x.ord
  LOOP
    SELECT r.status, r.owner INTO v_status, v_owner FROM ${s}.runs r WHERE r.id = v_park."runId";
    IF NOT FOUND OR v_owner IS DISTINCT FROM v_park."nodeId" OR v_status NOT IN ${LIVE} THEN
      v_outcomes := array_append(v_outcomes, 'lost'::text);
      CONTINUE;
    END IF;
    PERFORM ${s}.write_steps(v_park.steps);
    IF EXISTS (SELECT 1 FROM ${s}.signals g
               WHERE g.run_id = v_park."runId" AND g.consumed_by IS NULL AND g.name = ANY (v_park."waitingFor")) THEN
      v_outcomes := array_append(v_outcomes, 'signalled'::text);
      CONTINUE;
    END IF;
    UPDATE ${s}.runs SET
      owner = NULL, status = 'queued', not_before = v_park."notBefore", waiting_for = v_park."waitingFor",
      updated_at = v_now
    WHERE id = v_park."runId";
    INSERT INTO ${s}.run_events (run_id, at, kind, node_id, detail)
    VALUES (v_park."runId", v_park.at, 'parked', v_park."nodeId",
            jsonb_build_object('notBefore', v_park."notBefore", 'waitingFor', to_jsonb(v_park."waitingFor")));
    v_outcomes := array_append(v_outcomes, 'parked'::text);
  END LOOP;
  RETURN v_outcomes;
END $f$;

-- signal: 'unknown' (no such run, or another tenant's), 'ended' (with the run's status), or 'delivered' (with the
-- signal's id): stored, a signalled event, and a run waiting for this name woken (waiting_for and not_before
-- cleared). The run is locked first, so that a park and a signal of one run follow one another.
CREATE FUNCTION ${s}.signal_run(p_run text, p_tenant text, p_name text, p_payload jsonb, p_actor text, p_at bigint,
                                p_node text)
RETURNS TABLE (outcome text, signal_id bigint, run_status text) LANGUAGE plpgsql AS $f$
DECLARE
  v_waiting text[];
BEGIN
  SELECT r.status, r.waiting_for INTO run_status, v_waiting FROM ${s}.runs r
  WHERE r.id = p_run AND (p_tenant IS NULL OR r.tenant_id = p_tenant) AND r.type LIKE 'workflow:%'
  FOR UPDATE;
  IF NOT FOUND THEN
    outcome := 'unknown';
    run_status := NULL;
  ELSIF run_status NOT IN ${LIVE} THEN
    outcome := 'ended';
  ELSE
    INSERT INTO ${s}.signals (run_id, name, payload, actor, at) VALUES (p_run, p_name, p_payload, p_actor, p_at)
    RETURNING id INTO signal_id;
    IF p_name = ANY (v_waiting) THEN
      UPDATE ${s}.runs SET waiting_for = '{}', not_before = NULL, updated_at = ${s}.now_ms() WHERE id = p_run;
    END IF;
    INSERT INTO ${s}.run_events (run_id, at, kind, node_id, detail)
    VALUES (p_run, p_at, 'signalled', p_node,
            jsonb_build_object('name', p_name, 'actor', p_actor, 'signalId', signal_id));
    outcome := 'delivered';
  END IF;
  RETURN NEXT;
END $f$;
`,
  },
];

/** The newest schema version this code knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** A schema name the stores accept: a lower-case SQL identifier short enough for its channel name. */
export const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,47}$/;

/** Checks `schema` (the `schema` option) and gives it. */
export function checkSchemaName(schema: string): string {
  if (typeof schema !== 'string' || !SCHEMA_PATTERN.test(schema)) {
    throw new ValidationError(
      'schema',
      `The schema name ${JSON.stringify(schema)} is not one the store accepts: use lower-case letters, digits and _ (not first), at most 48 characters`,
    );
  }
  return schema;
}

/** Quotes a string as an SQL literal. */
function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The names the migrations of `schema` use. */
export function schemaNames(schema: string, deadLetterPattern: string): SchemaNames {
  return { s: `"${schema}"`, channel: literal(channelOf(schema)), deadLetterMessage: literal(deadLetterPattern) };
}

/** The notification channel of the finished runs of `schema`. */
export function channelOf(schema: string): string {
  return `${schema}_finished`;
}

/**
 * Applies the pending migrations of `schema` in `tx` (one transaction, under the schema's advisory lock); returns
 * the versions it applied. Refuses a schema newer than this code.
 */
export async function migrate(
  tx: SqlTransaction,
  schema: string,
  names: SchemaNames,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`unified-orchestrator migrations ${schema}`]);
  await tx.script(
    `CREATE SCHEMA IF NOT EXISTS ${names.s};
     CREATE TABLE IF NOT EXISTS ${names.s}.schema_migrations (
       version integer PRIMARY KEY,
       name text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now()
     );`,
  );
  const rows = await tx.query<{ version: number | null }>(
    `SELECT max(version) AS version FROM ${names.s}.schema_migrations`,
  );
  const current = rows[0]?.version ?? 0;
  const known = migrations[migrations.length - 1]?.version ?? 0;
  if (current > known) {
    throw new ValidationError(
      'schema',
      `The store's schema "${schema}" is at version ${current}, newer than this version of unified-orchestrator knows (${known}): a newer release migrated it. Upgrade unified-orchestrator on this node (or point the store at another schema)`,
    );
  }
  const applied: number[] = [];
  for (const migration of migrations) {
    if (migration.version <= current) continue;
    await tx.script(migration.sql(names));
    await tx.query(`INSERT INTO ${names.s}.schema_migrations (version, name) VALUES ($1, $2)`, [
      migration.version,
      migration.name,
    ]);
    applied.push(migration.version);
  }
  return applied;
}
