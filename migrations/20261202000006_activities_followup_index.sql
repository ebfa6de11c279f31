-- no-transaction
-- Follow-ups are `lead_activities` rows with a `followup_type`, whoever wrote them (DESIGN.md).
-- The snapshot and `verify` read them per lead; built CONCURRENTLY on the CRM's table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS followup_activities_followups_idx
    ON lead_activities (lead_id)
    WHERE metadata ? 'followup_type'
