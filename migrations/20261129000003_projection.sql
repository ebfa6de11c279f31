-- The projector's read model (followup-projector). Everything is IF NOT EXISTS so the file can
-- also be executed a second time with a different search_path: `rebuild` runs it inside the
-- schema `projection_rebuild` to create the shadow tables it builds before swapping them in.
-- Columns are TEXT rather than VARCHAR(n): an event must never fail to apply because a value
-- from the stream is longer than a column. Tables updated in place on every batch leave free
-- space in their pages (fillfactor) so those updates stay HOT (no index writes).

-- Ids of every applied event: a redelivered or duplicated event changes nothing, for ever.
CREATE TABLE IF NOT EXISTS projection_inbox (
    event_id UUID PRIMARY KEY
);

-- Follow-up state per lead, from the lead.changed.v1 event with the largest sequence.
-- sequence = 0: the lead is known only from a sent event; it counts nowhere until its state arrives.
CREATE TABLE IF NOT EXISTS projection_leads (
    lead_id               BIGINT PRIMARY KEY,
    sequence              BIGINT NOT NULL,
    owner_user_id         TEXT,
    collaborator_user_ids TEXT[] NOT NULL DEFAULT '{}',
    status                TEXT NOT NULL,
    registered_at         TIMESTAMPTZ,
    clock_stopped_at      TIMESTAMPTZ,
    t3_sent               BOOLEAN NOT NULL,
    t7_sent               BOOLEAN NOT NULL,
    deleted               BOOLEAN NOT NULL,
    changed_at            TIMESTAMPTZ
) WITH (fillfactor = 80);

-- Delivered follow-ups (lead.followup.sent.v1), at most one per lead and kind.
CREATE TABLE IF NOT EXISTS projection_deliveries (
    lead_id BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    run_id  TEXT NOT NULL,
    PRIMARY KEY (lead_id, kind)
);

-- Current figures per scope ('org' or 'user:<id>'), maintained by deltas in the apply transaction.
-- followed: leads that got at least one follow-up; converted: of those, the CONVERTED ones.
CREATE TABLE IF NOT EXISTS projection_scope_figures (
    scope      TEXT PRIMARY KEY,
    pending_t3 BIGINT NOT NULL DEFAULT 0,
    pending_t7 BIGINT NOT NULL DEFAULT 0,
    followed   BIGINT NOT NULL DEFAULT 0,
    converted  BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

-- Per scope and local day (FOLLOWUP_TZ, from event times so a rebuild is deterministic):
-- follow-ups sent that day, and the net change of pending T+3/T+7 during that day (the trend:
-- its sign is the comparison with the value at the previous local midnight).
CREATE TABLE IF NOT EXISTS projection_scope_days (
    scope      TEXT NOT NULL,
    local_date DATE NOT NULL,
    sent       BIGINT NOT NULL DEFAULT 0,
    t3_net     BIGINT NOT NULL DEFAULT 0,
    t7_net     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, local_date)
) WITH (fillfactor = 50);

-- Producer runs (lead.followup.processed.v1), for the "recent runs" list.
CREATE TABLE IF NOT EXISTS projection_runs (
    run_id        TEXT PRIMARY KEY,
    t3_count      BIGINT NOT NULL,
    t7_count      BIGINT NOT NULL,
    skipped_count BIGINT NOT NULL,
    error_count   BIGINT NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL,
    duration_ms   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS projection_runs_processed_idx ON projection_runs (processed_at DESC);

-- One row: the time zone the day keys were computed in, and how far the projection got.
CREATE TABLE IF NOT EXISTS projection_state (
    id                   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    time_zone            TEXT NOT NULL,
    last_stream_sequence BIGINT NOT NULL DEFAULT 0,
    last_event_at        TIMESTAMPTZ
);

-- Messages that cannot be applied, kept for an operator (`dead-letters list|replay`).
-- Not part of the rebuilt projection: a rebuild leaves this table alone.
CREATE TABLE IF NOT EXISTS projection_dead_letters (
    id               BIGSERIAL PRIMARY KEY,
    stream_sequence  BIGINT NOT NULL UNIQUE,
    subject          TEXT NOT NULL,
    headers          JSONB NOT NULL DEFAULT '{}',
    body             BYTEA NOT NULL,
    reason           TEXT NOT NULL,
    deliveries       BIGINT NOT NULL,
    dead_lettered_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
