-- The outbox holds an event's parts only (id, type, subject, key, time, data); the relay builds
-- the CloudEvent with the CloudEvents SDK when it publishes (contract crate, `EventParts`).
-- Rows written by the trigger carry no idempotency key: the key of a `lead.changed.v1` is
-- `lead:<subject>:change:<outbox id>`, and its format is defined once, in Rust
-- (`followup_contract::outbox_key`). Rows written by the producer keep theirs.
ALTER TABLE followup_outbox ALTER COLUMN idempotency_key DROP NOT NULL;

CREATE OR REPLACE FUNCTION followup_write_lead_changed(p_lead_id BIGINT, p_facts JSONB)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_id BIGINT;
BEGIN
    -- The outbox id is the event's `sequence` (and part of its key, see above).
    v_id := nextval(pg_get_serial_sequence('followup_outbox', 'id'));
    INSERT INTO followup_outbox (id, event_type, subject, data)
    VALUES (v_id, 'lead.changed.v1', p_lead_id::text,
            p_facts || jsonb_build_object(
                'collaboratorUserIds',
                COALESCE((SELECT jsonb_agg(c.user_id ORDER BY c.user_id)
                          FROM lead_collaborators c WHERE c.lead_id = p_lead_id), '[]'::jsonb),
                'contactable',
                (p_facts ->> 'contactable')::boolean AND NOT followup_email_opted_out(p_lead_id),
                'sequence', v_id));
END $$;
