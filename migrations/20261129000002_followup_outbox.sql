-- Our tables: runs, delivery records (the source of truth for what was sent), and the
-- transactional outbox the relay publishes to JetStream and then deletes.

CREATE TABLE IF NOT EXISTS followup_runs (
    run_id        UUID PRIMARY KEY,
    -- 'followup-run:<slot>' for scheduled runs, 'followup-run:<run id>' for manual ones.
    -- Unique, so two replicas firing the same cron slot run it once.
    run_key       TEXT NOT NULL UNIQUE,
    trigger       TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    t3_count      BIGINT NOT NULL DEFAULT 0,
    t7_count      BIGINT NOT NULL DEFAULT 0,
    skipped_count BIGINT NOT NULL DEFAULT 0,
    error_count   BIGINT NOT NULL DEFAULT 0,
    duration_ms   BIGINT
);

CREATE TABLE IF NOT EXISTS followup_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    lead_id       BIGINT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('t3', 't7')),
    status        TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
    run_id        UUID NOT NULL,
    owner_user_id VARCHAR(50),
    attempts      INTEGER NOT NULL DEFAULT 1,
    reason        TEXT,
    message_id    TEXT,
    delivered_at  TIMESTAMPTZ NOT NULL,
    -- A follow-up kind reaches a lead at most once, whatever runs in parallel.
    UNIQUE (lead_id, kind)
);
CREATE INDEX IF NOT EXISTS followup_deliveries_delivered_idx ON followup_deliveries (delivered_at);

CREATE TABLE IF NOT EXISTS followup_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        UUID NOT NULL DEFAULT gen_random_uuid(),
    event_type      TEXT NOT NULL,
    -- CloudEvents `subject` (the lead id where there is one).
    subject         TEXT,
    -- Not a unique index: every key is unique by construction (delivery records are unique per
    -- lead and kind, run keys per run, change keys carry the outbox id), JetStream dedups by it,
    -- and each extra index costs the relay an index insert per published row.
    idempotency_key TEXT NOT NULL,
    data            JSONB NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set by the relay when a publish of this row failed, for operators reading the backlog.
    publish_attempts INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
-- The outbox is a queue: the relay deletes a row once JetStream acknowledged it (a delete costs
-- a fifth of an update that marks it, which decides the relay's throughput). Every row in the
-- table is therefore unpublished; the stream is the record of what was published.

-- Wake the relay once per inserting statement (NOTIFY folds repeats within a transaction).
CREATE OR REPLACE FUNCTION followup_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('followup_outbox', '');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS followup_outbox_notify ON followup_outbox;
CREATE TRIGGER followup_outbox_notify
    AFTER INSERT ON followup_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION followup_outbox_notify();

-- lead.changed.v1: one outbox row per committed change of a follow-up-relevant column.
-- The outbox id is the event's `sequence`: later changes of a lead get larger ones.
CREATE OR REPLACE FUNCTION followup_lead_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r         leads%ROWTYPE;
    v_deleted BOOLEAN;
    v_id      BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        v_deleted := TRUE;
    ELSE
        r := NEW;
        v_deleted := (NEW.status = 'DELETED');
    END IF;
    v_id := nextval(pg_get_serial_sequence('followup_outbox', 'id'));
    INSERT INTO followup_outbox (id, event_type, subject, idempotency_key, data)
    VALUES (
        v_id,
        'lead.changed.v1',
        r.id::text,
        'lead:' || r.id || ':change:' || v_id,
        jsonb_build_object(
            'leadId', r.id,
            'ownerUserId', r.owner_user_id,
            'collaboratorUserIds', to_jsonb(COALESCE(r.collaborator_user_ids, '{}'::text[])),
            'status', r.status,
            'registeredAt', to_char(r.registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'clockStoppedAt', to_char(r.clock_stopped_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            't3Sent', r.t3_followup_sent,
            't7Sent', r.t7_followup_sent,
            'deleted', v_deleted,
            'sequence', v_id
        )
    );
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS followup_lead_changed_ins ON leads;
CREATE TRIGGER followup_lead_changed_ins
    AFTER INSERT ON leads
    FOR EACH ROW EXECUTE FUNCTION followup_lead_changed();

DROP TRIGGER IF EXISTS followup_lead_changed_del ON leads;
CREATE TRIGGER followup_lead_changed_del
    AFTER DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION followup_lead_changed();

-- The update trigger is created by 20261202000001 (rewritten on 2026-12-02: the earlier text's
-- WHEN clause named CRM columns, which blocks the CRM's own ALTER COLUMN ... TYPE and fails on a
-- CRM whose follow-up columns do not exist yet).
