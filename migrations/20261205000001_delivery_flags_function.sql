-- Whether a lead has a finally failed follow-up (`failed`) and whether one was sent (`followed`),
-- kept on its projection rows (`projection_leads` and `projection_collaborations`, next
-- migration) by triggers on `projection_deliveries`, so the "failed" and "converted" lists of a
-- user are index range scans like the others instead of a probe per lead.
-- Its own file, outside the projection's DDL that `rebuild` runs in a shadow schema: the
-- function must stay in `public` when the shadow schema is dropped. The table names are
-- unqualified on purpose: the trigger writes the tables of the session's `search_path` (the
-- live ones, or `rebuild`'s shadow tables).
CREATE OR REPLACE FUNCTION public.followup_sync_delivery_flags() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    has_failure BOOLEAN;
    has_sent BOOLEAN;
BEGIN
    SELECT COALESCE(bool_or(d.status = 'failed'), FALSE), COALESCE(bool_or(d.status = 'sent'), FALSE)
      INTO has_failure, has_sent
      FROM projection_deliveries d WHERE d.lead_id = NEW.lead_id;
    UPDATE projection_leads l SET failed = has_failure, followed = has_sent
     WHERE l.lead_id = NEW.lead_id
       AND (l.failed IS DISTINCT FROM has_failure OR l.followed IS DISTINCT FROM has_sent);
    UPDATE projection_collaborations c SET failed = has_failure, followed = has_sent
     WHERE c.lead_id = NEW.lead_id
       AND (c.failed IS DISTINCT FROM has_failure OR c.followed IS DISTINCT FROM has_sent);
    RETURN NULL;
END $$;
