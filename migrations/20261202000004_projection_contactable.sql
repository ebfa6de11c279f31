-- The contactable rule is part of lead.changed.v1 (DESIGN.md, 2026-11-30): pending figures count
-- contactable leads only. Rows written before take the value events without the field read as.
-- `rebuild` runs this file after 20261129000003 inside its shadow schema.
ALTER TABLE projection_leads ADD COLUMN IF NOT EXISTS contactable BOOLEAN NOT NULL DEFAULT TRUE;

-- When the projection was initialised from a snapshot of the CRM (`snapshot`): NULL until then.
-- `serve` takes the snapshot on its first start against an empty projection; `rebuild` takes a
-- fresh one.
ALTER TABLE projection_state ADD COLUMN IF NOT EXISTS snapshot_at TIMESTAMPTZ;

-- When an event id entered the inbox, so the inbox can be pruned once no duplicate of that event
-- can arrive any more (the stream's retention, the dead letters' age; `projector::prune`). Ids
-- stored before this column existed take the time of this migration.
ALTER TABLE projection_inbox ADD COLUMN IF NOT EXISTS applied_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS projection_inbox_applied_idx ON projection_inbox (applied_at);

-- A follow-up that finally failed (lead.followup.failed.v1) is kept beside the delivered ones:
-- that lead is no longer pending for it (DESIGN.md: a lead that will never be mailed is not
-- pending). A later `sent` of the same kind (an operator cleared the failure) replaces it.
ALTER TABLE projection_deliveries ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'sent';
