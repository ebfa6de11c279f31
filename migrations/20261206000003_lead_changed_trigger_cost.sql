-- The lead.changed.v1 triggers cost a CRM write (and a producer run, which marks every lead it
-- mails) 1.5-1.9 ms a row on the production schema; the run benchmark went from 14.5 s to 47 s.
-- Two things in 20261202000001, same events and rules after this file:
--
-- 1. `followup_row_facts(to_jsonb(NEW), ...)`: a SQL function is inlined into its caller, and an
--    argument it references more than once is copied to each reference when it looks cheap
--    (`to_jsonb` does, by its declared cost). So the whole ~50-column row was turned into JSON 14
--    times for NEW and 14 times for OLD (EXPLAIN VERBOSE shows the 14 copies). The trigger now
--    converts each row once into a variable and passes that.
-- 2. `NOT followup_email_opted_out(...)` inside the outbox INSERT: that function's body has a
--    sub-select, so it is never inlined, and a non-inlined SQL function is parsed and planned
--    again in every execution of the statement that calls it: once per trigger call (~110 µs).
--    As a plain PL/pgSQL assignment (a "simple expression", evaluated in a state kept for the
--    transaction) it is planned once per transaction. It still runs after the lead's row lock
--    and with a fresh snapshot, as before: an assignment in a volatile function takes one.
--
-- Measured with EXPLAIN ANALYZE of the run's T+3 mark (1 000 leads, 200 000-lead table): the
-- update trigger took 1 450-1 900 ms before, 160-230 ms after.

CREATE OR REPLACE FUNCTION followup_write_lead_changed(p_lead_id BIGINT, p_facts JSONB)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_id          BIGINT;
    v_contactable BOOLEAN;
BEGIN
    -- The consent table's part of the contactable rule, read after the caller locked the lead.
    v_contactable := (p_facts ->> 'contactable')::boolean AND NOT followup_email_opted_out(p_lead_id);
    -- The outbox id is the event's `sequence` (and part of its key, see 20261203000001).
    v_id := nextval(pg_get_serial_sequence('followup_outbox', 'id'));
    INSERT INTO followup_outbox (id, event_type, subject, data)
    VALUES (v_id, 'lead.changed.v1', p_lead_id::text,
            p_facts || jsonb_build_object(
                'collaboratorUserIds',
                COALESCE((SELECT jsonb_agg(c.user_id ORDER BY c.user_id)
                          FROM lead_collaborators c WHERE c.lead_id = p_lead_id), '[]'::jsonb),
                'contactable', v_contactable,
                'sequence', v_id));
END $$;

-- As in 20261202000001, with each row turned into JSON once (see 1. above).
CREATE OR REPLACE FUNCTION followup_lead_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET TimeZone = 'UTC' AS $$
DECLARE
    v_row   JSONB;
    v_facts JSONB;
BEGIN
    IF TG_TABLE_NAME = 'leads' THEN
        -- The statement holds the lead's row lock already.
        IF TG_OP = 'DELETE' THEN
            v_row := to_jsonb(OLD);
            PERFORM followup_write_lead_changed(OLD.id, followup_row_facts(v_row, TRUE));
        ELSE
            v_row := to_jsonb(NEW);
            v_facts := followup_row_facts(v_row, FALSE);
            IF TG_OP = 'UPDATE' THEN
                v_row := to_jsonb(OLD);
                IF v_facts = followup_row_facts(v_row, FALSE) THEN
                    RETURN NULL;
                END IF;
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

-- CREATE OR REPLACE drops the function's SET clauses that its text does not repeat: the
-- search_path of 20261202000001 again (our schema only, `pg_temp` last).
DO $paths$
BEGIN
    EXECUTE format('ALTER FUNCTION followup_lead_changed() SET search_path = %I, pg_temp',
                   current_schema());
END $paths$;
