-- no-transaction
-- The due-lead scans' index on the CRM's `leads` (keyset batches over ACTIVE leads by id), built
-- CONCURRENTLY so the CRM keeps writing (DESIGN.md: indexes on CRM tables are built concurrently).
-- Its predicate names only `status`, which every CRM version has; the follow-up columns may be
-- added by a CRM migration that runs after ours. One statement per file: CONCURRENTLY cannot run
-- inside a transaction block. Replaces `leads_followup_due_idx` (dropped by the next migration).
CREATE INDEX CONCURRENTLY IF NOT EXISTS followup_leads_active_idx
    ON leads (id)
    WHERE status = 'ACTIVE'
