-- Deliveries are claimed before they are sent (issue 5): a 'pending' delivery record is the claim,
-- written and committed before the mail goes out, so no row lock on `leads` is held while the mail
-- server is slow or away. The run turns it into 'sent' or 'failed', or deletes it when the mail was
-- not sent. For a pending record, `delivered_at` is the time of the claim and `attempts` is 0.
-- Readers of delivered follow-ups filter on status = 'sent' (as they did).
ALTER TABLE followup_deliveries DROP CONSTRAINT IF EXISTS followup_deliveries_status_check;
ALTER TABLE followup_deliveries ADD CONSTRAINT followup_deliveries_status_check
    CHECK (status IN ('pending', 'sent', 'failed'));
CREATE INDEX IF NOT EXISTS followup_deliveries_pending_idx
    ON followup_deliveries (run_id) WHERE status = 'pending';

-- A run refreshes its heartbeat while it holds claims; a later run releases the claims of a run
-- whose heartbeat is older than FOLLOWUP_CLAIM_TIMEOUT_SECS (it crashed) and sends them again.
ALTER TABLE followup_runs ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now();
