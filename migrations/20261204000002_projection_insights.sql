-- Follow-up insights (issue 15): which leads are behind a figure. `rebuild` runs this file after
-- the other projection files inside its shadow schema, so everything is IF NOT EXISTS.

-- Why a follow-up finally failed (lead.followup.failed.v1 `reason`); NULL for sent ones and for
-- failures projected before this column existed.
ALTER TABLE projection_deliveries ADD COLUMN IF NOT EXISTS reason TEXT;

-- The users a lead's figures belong to, and its collaborators alone, trimmed, kept by Postgres
-- (`public.followup_lead_members`, from the previous migration; qualified because `rebuild` runs
-- this file with its shadow schema as the only search path). A sales user's lists read the leads
-- they own through a btree on the trimmed owner, in list order, and the ones they only
-- collaborate on through a GIN index on `co_members`.
ALTER TABLE projection_leads ADD COLUMN IF NOT EXISTS members TEXT[]
  GENERATED ALWAYS AS (public.followup_lead_members(owner_user_id, collaborator_user_ids)) STORED;
ALTER TABLE projection_leads ADD COLUMN IF NOT EXISTS co_members TEXT[]
  GENERATED ALWAYS AS (public.followup_lead_members(NULL, collaborator_user_ids)) STORED;
CREATE INDEX IF NOT EXISTS projection_leads_co_members_idx ON projection_leads USING GIN (co_members);
-- The owner indexes carry the columns the lists filter on, so a user's list is an index-only
-- scan in list order that stops after a page.
CREATE INDEX IF NOT EXISTS projection_leads_owner_due_idx
  ON projection_leads (btrim(owner_user_id), registered_at, lead_id)
  INCLUDE (status, clock_stopped_at, contactable, t3_sent, t7_sent, deleted, changed_at);
CREATE INDEX IF NOT EXISTS projection_leads_owner_idx
  ON projection_leads (btrim(owner_user_id), lead_id)
  INCLUDE (status, registered_at, deleted, changed_at);

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

-- How the figures moved (issue 15): per scope and local day, follow-ups sent by kind, final
-- failures, and conversions of followed-up leads as they happened. Sent and failed counts are
-- facts of the deliveries (rebuildable); conversions have no date in the CRM, so the projection
-- records them when it sees them (a rebuild carries the recorded ones over).
ALTER TABLE projection_scope_days
  ADD COLUMN IF NOT EXISTS t3_sent BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS t7_sent BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS failed BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS converted BIGINT NOT NULL DEFAULT 0;

-- Days recorded before these columns learn their sent and failed counts from the deliveries they
-- were counted from (the same rule the projector applies: a counted lead's deliveries, on their
-- local day, in the organisation and each member's scope). Conversions before this release have
-- no day. On empty (shadow) tables this does nothing.
INSERT INTO projection_scope_days AS d (scope, local_date, t3_sent, t7_sent, failed)
SELECT s.scope, (pd.sent_at AT TIME ZONE st.time_zone)::date,
       count(*) FILTER (WHERE pd.status = 'sent' AND pd.kind = 't3'),
       count(*) FILTER (WHERE pd.status = 'sent' AND pd.kind = 't7'),
       count(*) FILTER (WHERE pd.status = 'failed')
FROM projection_deliveries pd
JOIN projection_leads l ON l.lead_id = pd.lead_id AND l.changed_at IS NOT NULL AND NOT l.deleted
CROSS JOIN projection_state st
CROSS JOIN LATERAL (SELECT 'org' UNION ALL SELECT 'user:' || m FROM unnest(l.members) AS m) AS s(scope)
GROUP BY 1, 2
ON CONFLICT (scope, local_date) DO UPDATE
  SET t3_sent = EXCLUDED.t3_sent, t7_sent = EXCLUDED.t7_sent, failed = EXCLUDED.failed;
