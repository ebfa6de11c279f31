-- The CRM's own tables, for a CRM-less install (the demo, a module tried on its own). On the CRM's
-- database they exist already, and this migration does nothing at all to them: it adds no column,
-- retypes nothing and builds no index there (DESIGN.md "How we live in that database"). The types
-- are the CRM's production types: naive timestamps holding UTC, nullable flags and metadata.
--
-- Rewritten on 2026-12-02: the earlier text added columns to an existing `leads` table, which
-- pre-empted the CRM's own `ADD COLUMN IF NOT EXISTS` with other types. A database that applied the
-- earlier text keeps what it did; `followup_infra::db` accepts either text's checksum.
DO $crm$
BEGIN
    IF to_regclass('leads') IS NOT NULL THEN
        RETURN;
    END IF;
    CREATE TABLE leads (
        id                    BIGSERIAL PRIMARY KEY,
        company_name          VARCHAR(255) NOT NULL,
        contact_person        VARCHAR(255),
        email                 VARCHAR(255),
        business_type         VARCHAR(50),
        territory_id          VARCHAR(10),
        status                VARCHAR(30) NOT NULL DEFAULT 'REGISTERED',
        owner_user_id         VARCHAR(50),
        collaborator_user_ids TEXT[] DEFAULT '{}',
        registered_at         TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
        clock_stopped_at      TIMESTAMP,
        reminder_sent_at      TIMESTAMP,
        t3_followup_sent      BOOLEAN DEFAULT FALSE,
        t7_followup_sent      BOOLEAN DEFAULT FALSE,
        last_followup_at      TIMESTAMP,
        followup_count        INTEGER DEFAULT 0,
        metadata              JSONB DEFAULT '{}',
        contact_blocked       BOOLEAN DEFAULT FALSE,
        consent_revoked_at    TIMESTAMP,
        consent_revoked_by    VARCHAR(50),
        gdpr_deleted          BOOLEAN DEFAULT FALSE,
        created_by            VARCHAR(50) NOT NULL DEFAULT 'SYSTEM',
        version               BIGINT NOT NULL DEFAULT 0,
        created_at            TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
        updated_at            TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
    );
    CREATE TABLE IF NOT EXISTS lead_collaborators (
        lead_id BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        user_id VARCHAR(50) NOT NULL,
        PRIMARY KEY (lead_id, user_id)
    );
    CREATE TABLE IF NOT EXISTS lead_consent (
        id          BIGSERIAL PRIMARY KEY,
        lead_id     BIGINT NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
        channel     VARCHAR(10) NOT NULL,
        status      VARCHAR(10) NOT NULL,
        occurred_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
        UNIQUE (lead_id, channel)
    );
    CREATE TABLE IF NOT EXISTS lead_activities (
        id            BIGSERIAL PRIMARY KEY,
        lead_id       BIGINT NOT NULL,
        user_id       VARCHAR(50) NOT NULL,
        activity_type VARCHAR(30) NOT NULL,
        activity_date TIMESTAMP NOT NULL,
        description   TEXT,
        metadata      JSONB,
        created_at    TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
    );
    CREATE INDEX IF NOT EXISTS lead_activities_lead_idx ON lead_activities (lead_id);
END $crm$;
