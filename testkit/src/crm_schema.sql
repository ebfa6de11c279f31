-- The CRM's production schema, as far as the follow-up pipeline reads or writes it, written from
-- the facts in DESIGN.md "Domain" (read off the CRM's production migrations, 2026-11-30). Every test
-- database gets it before our migrations run, so every test runs on what production has:
-- naive UTC timestamps, nullable flags and metadata, collaborators in their own table, GDPR consent
-- fields, row-level security, Hibernate's `version`, the CRM's own triggers and Flyway history.
-- Executed by a superuser; the tables are handed to the role `crm_owner` at the end (roles are
-- created by the test kit, once per cluster).

CREATE TABLE flyway_schema_history (
    installed_rank INTEGER PRIMARY KEY,
    version        VARCHAR(50),
    description    VARCHAR(200) NOT NULL,
    type           VARCHAR(20) NOT NULL,
    script         VARCHAR(1000) NOT NULL,
    checksum       INTEGER,
    installed_by   VARCHAR(100) NOT NULL,
    installed_on   TIMESTAMP NOT NULL DEFAULT now(),
    execution_time INTEGER NOT NULL,
    success        BOOLEAN NOT NULL
);
INSERT INTO flyway_schema_history VALUES
    (1, '1', 'initial schema', 'SQL', 'V1__initial_schema.sql', 918273645, 'crm_owner', now(), 120, TRUE),
    (2, '212', 'lead followup tracking', 'SQL', 'V212__lead_followup_tracking.sql', -44120931, 'crm_owner', now(), 35, TRUE),
    (3, '228', 'lead collaborators', 'SQL', 'V228__lead_collaborators.sql', 771203, 'crm_owner', now(), 18, TRUE),
    (4, '241', 'gdpr consent', 'SQL', 'V241__gdpr_consent.sql', 1200331, 'crm_owner', now(), 22, TRUE),
    (5, '247', 'lead row level security', 'SQL', 'V247__lead_rls.sql', -5512, 'crm_owner', now(), 9, TRUE);

CREATE TABLE leads (
    id                    BIGSERIAL PRIMARY KEY,
    company_name          VARCHAR(255) NOT NULL,
    contact_person        VARCHAR(255),
    email                 VARCHAR(255),
    phone                 VARCHAR(50),
    website               VARCHAR(500),
    street                VARCHAR(255),
    postal_code           VARCHAR(20),
    city                  VARCHAR(100),
    country_code          VARCHAR(2) DEFAULT 'DE',
    business_type         VARCHAR(50) CHECK (business_type IN ('RESTAURANT', 'HOTEL', 'CATERING',
                              'KANTINE', 'GROSSHANDEL', 'LEH', 'BILDUNG', 'GESUNDHEIT', 'SONSTIGES')),
    kitchen_size          VARCHAR(20),
    employee_count        INTEGER,
    estimated_volume      NUMERIC(12, 2),
    territory_id          VARCHAR(10),
    source                VARCHAR(50),
    source_campaign       VARCHAR(255),
    status                VARCHAR(30) NOT NULL DEFAULT 'REGISTERED' CHECK (status IN ('REGISTERED',
                              'ACTIVE', 'REMINDER', 'GRACE_PERIOD', 'QUALIFIED', 'CONVERTED', 'LOST',
                              'EXPIRED', 'EXTENDED', 'DELETED')),
    owner_user_id         VARCHAR(50),
    -- Legacy: only the RLS policies read it; nothing writes it any more.
    collaborator_user_ids TEXT[] DEFAULT '{}',
    registered_at         TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    last_activity_at      TIMESTAMP,
    reminder_sent_at      TIMESTAMP,
    grace_period_start_at TIMESTAMP,
    expired_at            TIMESTAMP,
    clock_stopped_at      TIMESTAMP,
    stop_reason           TEXT,
    stop_approved_by      VARCHAR(50),
    protection_until      TIMESTAMP,
    t3_followup_sent      BOOLEAN DEFAULT FALSE,
    t7_followup_sent      BOOLEAN DEFAULT FALSE,
    last_followup_at      TIMESTAMP,
    followup_count        INTEGER DEFAULT 0,
    metadata              JSONB DEFAULT '{}',
    contact_blocked       BOOLEAN DEFAULT FALSE,
    consent_given_at      TIMESTAMP,
    consent_revoked_at    TIMESTAMP,
    consent_revoked_by    VARCHAR(50),
    gdpr_deleted          BOOLEAN DEFAULT FALSE,
    gdpr_deleted_at       TIMESTAMP,
    gdpr_deleted_by       VARCHAR(50),
    created_by            VARCHAR(50) NOT NULL,
    updated_by            VARCHAR(50),
    version               BIGINT NOT NULL DEFAULT 0,
    created_at            TIMESTAMP NOT NULL DEFAULT now(),
    updated_at            TIMESTAMP NOT NULL DEFAULT now(),
    -- Allows a minute of clock skew between the CRM's hosts and the database.
    CONSTRAINT leads_registered_not_in_future
        CHECK (registered_at <= (now() AT TIME ZONE 'UTC') + interval '1 minute')
);
CREATE INDEX idx_leads_owner ON leads (owner_user_id);
CREATE INDEX idx_leads_status ON leads (status);

-- The CRM's own triggers: normalisation before writes, a NOTIFY on status changes. Neither pins a
-- column (no WHEN / UPDATE OF list), as the CRM's migrations also avoid.
CREATE FUNCTION crm_normalize_lead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(btrim(NEW.email));
    NEW.company_name := btrim(NEW.company_name);
    RETURN NEW;
END $$;
CREATE TRIGGER trg_leads_normalize BEFORE INSERT OR UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION crm_normalize_lead();

CREATE FUNCTION crm_notify_lead_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM pg_notify('lead_status_changed', NEW.id::text || ':' || NEW.status);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_leads_status_notify AFTER UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION crm_notify_lead_status();

CREATE TABLE lead_collaborators (
    lead_id  BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    user_id  VARCHAR(50) NOT NULL,
    added_at TIMESTAMP NOT NULL DEFAULT now(),
    added_by VARCHAR(50),
    PRIMARY KEY (lead_id, user_id)
);

CREATE TABLE lead_consent (
    id          BIGSERIAL PRIMARY KEY,
    lead_id     BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    channel     VARCHAR(10) NOT NULL CHECK (channel IN ('EMAIL', 'PHONE', 'SMS', 'POST')),
    status      VARCHAR(10) NOT NULL CHECK (status IN ('OPT_IN', 'OPT_OUT', 'UNKNOWN', 'PENDING')),
    occurred_at TIMESTAMP NOT NULL DEFAULT now(),
    source      VARCHAR(50),
    UNIQUE (lead_id, channel)
);

CREATE TABLE lead_activities (
    id            BIGSERIAL PRIMARY KEY,
    lead_id       BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    user_id       VARCHAR(50) NOT NULL,
    activity_type VARCHAR(30) NOT NULL CHECK (activity_type IN ('NOTE', 'CALL', 'EMAIL', 'MEETING',
                      'STATUS_CHANGE', 'ASSIGNMENT', 'QUALIFICATION', 'CONVERSION')),
    activity_date TIMESTAMP NOT NULL,
    description   TEXT,
    metadata      JSONB,
    created_at    TIMESTAMP NOT NULL DEFAULT now()
);
CREATE INDEX idx_lead_activities_lead ON lead_activities (lead_id);

-- Row-level security, enabled but not forced: the owner bypasses it, any other role sees nothing
-- unless it sets the CRM's session settings.
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
CREATE POLICY leads_select ON leads FOR SELECT USING (
    current_setting('app.role_context', true) IN ('ADMIN', 'MANAGER', 'SYSTEM')
    OR owner_user_id = current_setting('app.user_context', true)
    OR current_setting('app.user_context', true) = ANY (collaborator_user_ids));
CREATE POLICY leads_update ON leads FOR UPDATE USING (
    current_setting('app.role_context', true) IN ('ADMIN', 'MANAGER', 'SYSTEM')
    OR owner_user_id = current_setting('app.user_context', true))
    WITH CHECK (
    current_setting('app.current_role', true) IN ('ADMIN', 'MANAGER', 'SYSTEM')
    OR owner_user_id = current_setting('app.current_user', true));
CREATE POLICY leads_insert ON leads FOR INSERT WITH CHECK (
    current_setting('app.current_role', true) IN ('ADMIN', 'MANAGER', 'SYSTEM', 'SALES'));
CREATE POLICY leads_delete ON leads FOR DELETE USING (
    current_setting('app.role_context', true) IN ('ADMIN', 'SYSTEM'));

ALTER TABLE flyway_schema_history OWNER TO crm_owner;
ALTER TABLE leads OWNER TO crm_owner;
ALTER TABLE lead_collaborators OWNER TO crm_owner;
ALTER TABLE lead_consent OWNER TO crm_owner;
ALTER TABLE lead_activities OWNER TO crm_owner;
ALTER FUNCTION crm_normalize_lead() OWNER TO crm_owner;
ALTER FUNCTION crm_notify_lead_status() OWNER TO crm_owner;
GRANT USAGE ON SCHEMA public TO crm_owner, followup_app;
GRANT CREATE ON SCHEMA public TO crm_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON leads, lead_collaborators, lead_consent, lead_activities
    TO followup_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO followup_app;
