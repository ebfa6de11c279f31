-- Running as an application role beside the CRM (DESIGN.md: migrations by the owner of the CRM's
-- tables; the services may run as a role that sets the RLS settings for the system user).

-- Whether the CRM holds any lead, seen as the owner (row-level security does not apply to it).
-- A service compares it with what its own role sees, so a role that RLS hides the leads from
-- stops at start with an error instead of running empty.
CREATE OR REPLACE FUNCTION followup_crm_holds_leads() RETURNS BOOLEAN
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT EXISTS (SELECT 1 FROM leads)
$$;
DO $paths$
BEGIN
    EXECUTE format('ALTER FUNCTION followup_crm_holds_leads() SET search_path = %I, pg_temp',
                   current_schema());
END $paths$;

-- What an application role needs, granted by the owner (`followup-producer migrate --grant-to`):
-- the CRM tables we read and write, our own tables and sequences, the migration history (read,
-- so a start finds nothing pending), and the functions.
CREATE OR REPLACE FUNCTION followup_grant_app_role(app_role TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    EXECUTE format('GRANT SELECT, UPDATE ON leads TO %I', app_role);
    EXECUTE format('GRANT SELECT ON lead_collaborators TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON lead_consent TO %I', app_role);
    EXECUTE format('GRANT SELECT, INSERT ON lead_activities TO %I', app_role);
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND (c.relname LIKE 'followup\_%' OR c.relname LIKE 'projection\_%')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app_role);
    END LOOP;
    EXECUTE format('GRANT SELECT ON _followup_migrations TO %I', app_role);
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind = 'S'
               AND (c.relname LIKE 'followup\_%' OR c.relname LIKE 'projection\_%'
                    OR c.relname = 'lead_activities_id_seq' OR c.relname = 'lead_consent_id_seq')
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE %I TO %I', t, app_role);
    END LOOP;
END $$;
