-- The CRM's own tables. They usually exist already: everything here is IF NOT EXISTS and
-- additive, so this runs unchanged against a CRM database and creates them on a fresh one.

CREATE TABLE IF NOT EXISTS leads (
    id                    BIGSERIAL PRIMARY KEY,
    company_name          VARCHAR(255) NOT NULL
);

ALTER TABLE leads ADD COLUMN IF NOT EXISTS contact_person        VARCHAR(255);
ALTER TABLE leads ADD COLUMN IF NOT EXISTS email                 VARCHAR(255);
ALTER TABLE leads ADD COLUMN IF NOT EXISTS business_type         VARCHAR(50);
ALTER TABLE leads ADD COLUMN IF NOT EXISTS territory_id          VARCHAR(10);
ALTER TABLE leads ADD COLUMN IF NOT EXISTS status                VARCHAR(30) NOT NULL DEFAULT 'REGISTERED';
ALTER TABLE leads ADD COLUMN IF NOT EXISTS owner_user_id         VARCHAR(50);
ALTER TABLE leads ADD COLUMN IF NOT EXISTS collaborator_user_ids TEXT[];
ALTER TABLE leads ADD COLUMN IF NOT EXISTS registered_at         TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE leads ADD COLUMN IF NOT EXISTS clock_stopped_at      TIMESTAMPTZ;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS t3_followup_sent      BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS t7_followup_sent      BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS last_followup_at      TIMESTAMPTZ;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS followup_count        INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS reminder_sent_at      TIMESTAMPTZ;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS metadata              JSONB NOT NULL DEFAULT '{}';
ALTER TABLE leads ADD COLUMN IF NOT EXISTS version               BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS created_at            TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE leads ADD COLUMN IF NOT EXISTS updated_at            TIMESTAMPTZ NOT NULL DEFAULT now();

-- Supports the due-lead scans (status + clock + flags, ordered by id for keyset batches).
CREATE INDEX IF NOT EXISTS leads_followup_due_idx
    ON leads (id)
    WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL AND NOT t7_followup_sent;

CREATE TABLE IF NOT EXISTS lead_activities (
    id            BIGSERIAL PRIMARY KEY,
    lead_id       BIGINT NOT NULL,
    user_id       VARCHAR(50),
    activity_type VARCHAR(50) NOT NULL,
    activity_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    description   TEXT,
    metadata      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS lead_activities_lead_idx ON lead_activities (lead_id);
