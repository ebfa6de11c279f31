-- Follow-up insights (issue 15): which leads are behind a figure. `rebuild` runs this file after
-- the other projection files inside its shadow schema, so everything is IF NOT EXISTS.

-- Why a follow-up finally failed (lead.followup.failed.v1 `reason`); NULL for sent ones and for
-- failures projected before this column existed.
ALTER TABLE projection_deliveries ADD COLUMN IF NOT EXISTS reason TEXT;

-- The users a lead's figures belong to, kept by Postgres (`public.followup_lead_members`, from
-- the previous migration; qualified because `rebuild` runs this file with its shadow schema as
-- the only search path) so the drill-down lists of a sales user find their leads by one GIN index.
ALTER TABLE projection_leads ADD COLUMN IF NOT EXISTS members TEXT[]
  GENERATED ALWAYS AS (public.followup_lead_members(owner_user_id, collaborator_user_ids)) STORED;
CREATE INDEX IF NOT EXISTS projection_leads_members_idx ON projection_leads USING GIN (members);

-- The pending lists, in due order. The predicates hold the columns that change only when a
-- lead's follow-up state does, so other updates of a lead stay HOT.
CREATE INDEX IF NOT EXISTS projection_leads_pending_t3_idx ON projection_leads (registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND NOT t3_sent;
CREATE INDEX IF NOT EXISTS projection_leads_pending_t7_idx ON projection_leads (registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND t3_sent AND NOT t7_sent;
CREATE INDEX IF NOT EXISTS projection_leads_converted_idx ON projection_leads (lead_id)
  WHERE status = 'CONVERTED' AND NOT deleted;
-- "Sent today" and "failed".
CREATE INDEX IF NOT EXISTS projection_deliveries_sent_at_idx ON projection_deliveries (sent_at)
  WHERE status = 'sent';
CREATE INDEX IF NOT EXISTS projection_deliveries_failed_idx ON projection_deliveries (lead_id)
  WHERE status = 'failed';
