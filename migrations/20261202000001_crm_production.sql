-- Living in the CRM's production schema (DESIGN.md "Domain"): naive UTC timestamps whatever the
-- session's TimeZone, NULL flags and metadata read as their defaults, collaborators from
-- `lead_collaborators`, the contactable rule, GDPR erasure, and triggers that pin no CRM column.

-- A database whose `leads` table an earlier version of our 20261129000001 created (a CRM-less
-- install) gets the production columns and tables it lacks. That table is recognised by what it
-- lacks: no Flyway history and no `created_by` (which every CRM version has and that text never
-- created). A CRM's tables are never touched.
DO $legacy$
BEGIN
    IF to_regclass('flyway_schema_history') IS NOT NULL
       OR EXISTS (SELECT 1 FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = 'leads'
                    AND column_name = 'created_by') THEN
        RETURN;
    END IF;
    ALTER TABLE leads ADD COLUMN IF NOT EXISTS contact_blocked BOOLEAN DEFAULT FALSE;
    ALTER TABLE leads ADD COLUMN IF NOT EXISTS consent_revoked_at TIMESTAMP;
    ALTER TABLE leads ADD COLUMN IF NOT EXISTS consent_revoked_by VARCHAR(50);
    ALTER TABLE leads ADD COLUMN IF NOT EXISTS gdpr_deleted BOOLEAN DEFAULT FALSE;
    CREATE TABLE IF NOT EXISTS lead_collaborators (
        lead_id BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        user_id VARCHAR(50) NOT NULL,
        PRIMARY KEY (lead_id, user_id)
    );
    CREATE TABLE IF NOT EXISTS lead_consent (
        id          BIGSERIAL PRIMARY KEY,
        lead_id     BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        channel     VARCHAR(10) NOT NULL,
        status      VARCHAR(10) NOT NULL,
        occurred_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
        UNIQUE (lead_id, channel)
    );
END $legacy$;

-- The contactable rule (DESIGN.md), defined once, in two parts every reader combines:
-- the lead's own columns — an e-mail, `metadata.emailConsent` true, not `contact_blocked`, no
-- `consent_revoked_at`, not `gdpr_deleted`; NULL reads as the column's default — ...
CREATE OR REPLACE FUNCTION followup_contactable_row(
    email TEXT, metadata JSONB, contact_blocked BOOLEAN, consent_revoked BOOLEAN,
    gdpr_deleted BOOLEAN) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(btrim(email), '') <> ''
       AND COALESCE(metadata -> 'emailConsent' = 'true'::jsonb, FALSE)
       AND contact_blocked IS NOT TRUE
       AND consent_revoked IS NOT TRUE
       AND gdpr_deleted IS NOT TRUE
$$;

-- ... and no EMAIL OPT_OUT in `lead_consent` (one row per lead and channel).
CREATE OR REPLACE FUNCTION followup_email_opted_out(p_lead_id BIGINT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM lead_consent c
                   WHERE c.lead_id = p_lead_id AND c.channel = 'EMAIL' AND c.status = 'OPT_OUT')
$$;

-- The row's part from the row as JSON (`to_jsonb(leads)`), for the triggers, which run inside
-- the CRM's own transactions: a column missing in some CRM version reads as NULL instead of
-- failing the CRM's write, and no column is referenced, so no `ALTER COLUMN ... TYPE` is blocked.
CREATE OR REPLACE FUNCTION followup_row_contactable(lead JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT followup_contactable_row(lead ->> 'email', lead -> 'metadata',
                                    (lead ->> 'contact_blocked')::boolean,
                                    (lead ->> 'consent_revoked_at') IS NOT NULL,
                                    (lead ->> 'gdpr_deleted')::boolean)
$$;

-- The whole rule from the row as JSON.
CREATE OR REPLACE FUNCTION followup_contactable(lead JSONB) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT followup_row_contactable(lead) AND NOT followup_email_opted_out((lead ->> 'id')::bigint)
$$;

-- A naive (UTC) or zoned timestamp of a row's JSON as RFC 3339 in UTC. Called only inside the
-- trigger function, whose `SET TimeZone = 'UTC'` makes a naive value read as UTC whatever the
-- CRM session's TimeZone is (a SET of its own here would cost 3 µs a call on every CRM write).
CREATE OR REPLACE FUNCTION followup_utc_text(value TEXT) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT to_char(value::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The follow-up-relevant facts of a lead row (the lead.changed.v1 data without collaborators,
-- the consent table and the sequence). NULL flags read as false.
CREATE OR REPLACE FUNCTION followup_row_facts(lead JSONB, hard_deleted BOOLEAN) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'leadId', (lead ->> 'id')::bigint,
        'ownerUserId', lead ->> 'owner_user_id',
        'status', lead ->> 'status',
        'registeredAt', followup_utc_text(lead ->> 'registered_at'),
        'clockStoppedAt', followup_utc_text(lead ->> 'clock_stopped_at'),
        't3Sent', COALESCE((lead ->> 't3_followup_sent')::boolean, FALSE),
        't7Sent', COALESCE((lead ->> 't7_followup_sent')::boolean, FALSE),
        'contactable', followup_row_contactable(lead),
        'deleted', hard_deleted OR lead ->> 'status' = 'DELETED'
                   OR COALESCE((lead ->> 'gdpr_deleted')::boolean, FALSE))
$$;

-- Writes one lead.changed.v1 for lead `p_lead_id` with its row's facts: the collaborators and the
-- consent table's part of the contactable rule are read here, in a statement of their own, so a
-- caller that waited for the lead's row lock sees what the other transaction committed. The
-- outbox id is the event's `sequence`.
CREATE OR REPLACE FUNCTION followup_write_lead_changed(p_lead_id BIGINT, p_facts JSONB)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_id BIGINT;
BEGIN
    v_id := nextval(pg_get_serial_sequence('followup_outbox', 'id'));
    INSERT INTO followup_outbox (id, event_type, subject, idempotency_key, data)
    VALUES (v_id, 'lead.changed.v1', p_lead_id::text,
            'lead:' || p_lead_id || ':change:' || v_id,
            p_facts || jsonb_build_object(
                'collaboratorUserIds',
                COALESCE((SELECT jsonb_agg(c.user_id ORDER BY c.user_id)
                          FROM lead_collaborators c WHERE c.lead_id = p_lead_id), '[]'::jsonb),
                'contactable',
                (p_facts ->> 'contactable')::boolean AND NOT followup_email_opted_out(p_lead_id),
                'sequence', v_id));
END $$;

-- A row of `lead_collaborators` or `lead_consent` changed: lock the lead's row first, so the
-- events of one lead are written in commit order (two collaborators added at the same moment by
-- two transactions: the later event lists both), then write the lead's event. A lead deleted in
-- this transaction (its children go by cascade) has no row: its own delete event tells.
CREATE OR REPLACE FUNCTION followup_child_changed(p_lead_id BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_row JSONB;
BEGIN
    SELECT to_jsonb(l) INTO v_row FROM leads l WHERE l.id = p_lead_id FOR NO KEY UPDATE;
    IF v_row IS NOT NULL THEN
        PERFORM followup_write_lead_changed(p_lead_id, followup_row_facts(v_row, FALSE));
    END IF;
END $$;

-- lead.changed.v1: one outbox row per committed change of a follow-up-relevant fact of a lead,
-- from `leads` and from the CRM tables that hold more of its facts (`lead_collaborators`,
-- `lead_consent`). The comparison of before and after is made here, not in a trigger's WHEN
-- clause, so the triggers pin no CRM column. SECURITY DEFINER: the CRM's own roles write `leads`
-- and must not need rights on our outbox (its search_path is set below, `pg_temp` last).
CREATE OR REPLACE FUNCTION followup_lead_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET TimeZone = 'UTC' AS $$
DECLARE
    v_facts JSONB;
BEGIN
    IF TG_TABLE_NAME = 'leads' THEN
        -- The statement holds the lead's row lock already.
        IF TG_OP = 'DELETE' THEN
            PERFORM followup_write_lead_changed(OLD.id, followup_row_facts(to_jsonb(OLD), TRUE));
        ELSE
            v_facts := followup_row_facts(to_jsonb(NEW), FALSE);
            IF TG_OP = 'UPDATE' AND v_facts = followup_row_facts(to_jsonb(OLD), FALSE) THEN
                RETURN NULL;
            END IF;
            PERFORM followup_write_lead_changed(NEW.id, v_facts);
        END IF;
        RETURN NULL;
    END IF;
    -- A child row: its lead changed; both leads when an update moved the row.
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM followup_child_changed(OLD.lead_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.lead_id IS DISTINCT FROM OLD.lead_id) THEN
        PERFORM followup_child_changed(NEW.lead_id);
    END IF;
    RETURN NULL;
END $$;

-- Functions that run with their owner's rights resolve names in our schema only, `pg_temp` last
-- (a temporary table of another role must not stand in for `followup_outbox` or `leads`).
DO $paths$
BEGIN
    EXECUTE format('ALTER FUNCTION followup_lead_changed() SET search_path = %I, pg_temp',
                   current_schema());
END $paths$;

DROP TRIGGER IF EXISTS followup_lead_changed_upd ON leads;
CREATE TRIGGER followup_lead_changed_upd
    AFTER UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION followup_lead_changed();

DROP TRIGGER IF EXISTS followup_collaborators_changed ON lead_collaborators;
CREATE TRIGGER followup_collaborators_changed
    AFTER INSERT OR UPDATE OR DELETE ON lead_collaborators
    FOR EACH ROW EXECUTE FUNCTION followup_lead_changed();

DROP TRIGGER IF EXISTS followup_consent_changed ON lead_consent;
CREATE TRIGGER followup_consent_changed
    AFTER INSERT OR UPDATE OR DELETE ON lead_consent
    FOR EACH ROW EXECUTE FUNCTION followup_lead_changed();
