-- A sales user's drill-down lists as index range scans (issue 15's benchmark). `rebuild` runs
-- this file after the other projection files inside its shadow schema, so everything is
-- IF [NOT] EXISTS and unqualified.
--
-- Measured on 1 000 000 leads: with one btree on the owner for every list, the planner read all
-- 5 000 leads of an owner and sorted them (9-30 ms a page), and a collaborator's page read every
-- lead they collaborate on through the GIN index on `co_members` before sorting (20-35 ms); an
-- empty "failed" list read all of a user's leads (12-100 ms), a "converted" list probed the
-- deliveries of each converted lead (up to 30 ms). Now each list has an index per owner in list
-- order, the collaborations are rows of their own with the same indexes, and whether a lead
-- failed or was followed up is a column.

-- Whether a follow-up of the lead finally failed and whether one was sent: written by the
-- projector with the lead's row from the deliveries it knows (`LeadRecord::list_flags`), in the
-- same statement when a delivery changes them. (A trigger on `projection_deliveries` did this
-- first and cost the projector a third of its throughput: an extra update of the lead's row.)
ALTER TABLE projection_leads ADD COLUMN IF NOT EXISTS failed BOOLEAN NOT NULL DEFAULT FALSE,
                             ADD COLUMN IF NOT EXISTS followed BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE projection_leads l SET failed = d.failed, followed = d.followed
  FROM (SELECT lead_id, bool_or(status = 'failed') AS failed, bool_or(status = 'sent') AS followed
        FROM projection_deliveries GROUP BY lead_id) d
 WHERE d.lead_id = l.lead_id;

-- The pending, converted and failed lists of one owner, in list order; the predicates are the
-- organisation's partial indexes' (20261204000002).
CREATE INDEX IF NOT EXISTS projection_leads_owner_pending_t3_idx
  ON projection_leads (btrim(owner_user_id), registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND NOT t3_sent;
CREATE INDEX IF NOT EXISTS projection_leads_owner_pending_t7_idx
  ON projection_leads (btrim(owner_user_id), registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND t3_sent AND NOT t7_sent AND NOT failed;
CREATE INDEX IF NOT EXISTS projection_leads_converted_followed_idx
  ON projection_leads (lead_id) WHERE status = 'CONVERTED' AND followed AND NOT deleted;
CREATE INDEX IF NOT EXISTS projection_leads_owner_converted_idx
  ON projection_leads (btrim(owner_user_id), lead_id)
  WHERE status = 'CONVERTED' AND followed AND NOT deleted;
CREATE INDEX IF NOT EXISTS projection_leads_failed_idx
  ON projection_leads (lead_id) WHERE failed AND NOT deleted;
CREATE INDEX IF NOT EXISTS projection_leads_owner_failed_idx
  ON projection_leads (btrim(owner_user_id), lead_id) WHERE failed AND NOT deleted;
-- Replaced by the indexes above and by projection_collaborations below; fewer indexes to
-- keep on the projector's write path. (`projection_leads_owner_idx` stays: "sent today" of one
-- owner, a small set found from the deliveries.)
DROP INDEX IF EXISTS projection_leads_owner_due_idx;
DROP INDEX IF EXISTS projection_leads_converted_idx;
DROP INDEX IF EXISTS projection_leads_co_members_idx;
-- Owner and collaborators together (20261204000002) were read only by that migration's backfill;
-- nothing reads them now, and Postgres computed them on every write of a lead.
ALTER TABLE projection_leads DROP COLUMN IF EXISTS members;

-- The leads a user collaborates on without owning them (one row per collaborator, trimmed, as
-- `co_members` holds them), with the columns the lists filter and sort on: a copy of the lead's
-- row, written by the projector in the same statement as the lead (projector/src/write.rs), so
-- it is never older than `projection_leads`.
CREATE TABLE IF NOT EXISTS projection_collaborations (
    user_id          TEXT NOT NULL,
    lead_id          BIGINT NOT NULL,
    owner_user_id    TEXT,
    status           TEXT NOT NULL,
    registered_at    TIMESTAMPTZ,
    clock_stopped_at TIMESTAMPTZ,
    t3_sent          BOOLEAN NOT NULL,
    t7_sent          BOOLEAN NOT NULL,
    contactable      BOOLEAN NOT NULL,
    deleted          BOOLEAN NOT NULL,
    changed_at       TIMESTAMPTZ,
    failed           BOOLEAN NOT NULL DEFAULT FALSE,
    followed         BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, lead_id)
);
CREATE INDEX IF NOT EXISTS projection_collaborations_lead_idx
  ON projection_collaborations (lead_id);
CREATE INDEX IF NOT EXISTS projection_collaborations_pending_t3_idx
  ON projection_collaborations (user_id, registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND NOT t3_sent;
CREATE INDEX IF NOT EXISTS projection_collaborations_pending_t7_idx
  ON projection_collaborations (user_id, registered_at, lead_id)
  WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND contactable AND NOT deleted
    AND t3_sent AND NOT t7_sent AND NOT failed;
CREATE INDEX IF NOT EXISTS projection_collaborations_converted_idx
  ON projection_collaborations (user_id, lead_id)
  WHERE status = 'CONVERTED' AND followed AND NOT deleted;
CREATE INDEX IF NOT EXISTS projection_collaborations_failed_idx
  ON projection_collaborations (user_id, lead_id) WHERE failed AND NOT deleted;

-- The collaborations of the leads projected so far (nothing in a fresh or shadow projection).
INSERT INTO projection_collaborations (user_id, lead_id, owner_user_id, status, registered_at,
                                       clock_stopped_at, t3_sent, t7_sent, contactable, deleted,
                                       changed_at, failed, followed)
SELECT m.user_id, l.lead_id, l.owner_user_id, l.status, l.registered_at, l.clock_stopped_at,
       l.t3_sent, l.t7_sent, l.contactable, l.deleted, l.changed_at, l.failed, l.followed
FROM projection_leads l, unnest(l.co_members) AS m(user_id)
WHERE m.user_id IS DISTINCT FROM btrim(l.owner_user_id)
ON CONFLICT DO NOTHING;
