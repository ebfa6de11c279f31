-- no-transaction
-- The index an earlier version built on `leads` without CONCURRENTLY and with a predicate that
-- misses NULL flags; `followup_leads_active_idx` replaces it.
DROP INDEX CONCURRENTLY IF EXISTS leads_followup_due_idx
