-- `projection_leads.co_members` (a lead's collaborators, trimmed, without blanks or repeats) was
-- a stored generated column: Postgres computed `followup_lead_members` (an aggregate with a sort)
-- on every write of every lead, about half of the projector's write statement for new leads
-- without collaborators (5 000 new leads on 740 000: 190 ms with the column, 100 ms without).
-- Only that statement reads it, to keep `projection_collaborations`; it now computes the same
-- value for the rows it writes, and only for leads that have collaborators
-- (projector/src/write.rs, `LEAD_ROW`). `rebuild` runs this file in its shadow schema too.
ALTER TABLE projection_leads DROP COLUMN IF EXISTS co_members;
