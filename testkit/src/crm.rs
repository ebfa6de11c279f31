//! The CRM fixture: its production schema (`crm_schema.sql`, written from DESIGN.md "Domain"), its
//! roles, and writers that change the CRM's data the way the CRM does — naive UTC timestamps from a
//! session in Europe/Berlin, NULLs where the columns allow them, collaborators in
//! `lead_collaborators`, consent withdrawn through the GDPR fields and `lead_consent`, whole-row
//! saves guarded by Hibernate's `version`, follow-up activities of the CRM's older automation.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres};

/// The CRM's tables, triggers, RLS policies and Flyway history.
pub const CRM_SCHEMA: &str = include_str!("crm_schema.sql");

/// The time zone of the CRM's database sessions (its JVMs run in Germany).
pub const CRM_SESSION_TIME_ZONE: &str = "Europe/Berlin";

/// Owner of the CRM's tables: applies migrations (ours included).
pub const OWNER_ROLE: &str = "crm_owner";
/// A role that is not the owner: row-level security applies to it.
pub const APP_ROLE: &str = "followup_app";
/// Password of both roles (the test server may not trust loopback connections).
pub const ROLE_PASSWORD: &str = "followup-test";

/// The roles, each created unless it exists; a parallel test creating it first is no error.
const CREATE_ROLES: &str = "
DO $$ BEGIN CREATE ROLE crm_owner LOGIN PASSWORD 'followup-test';
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE followup_app LOGIN PASSWORD 'followup-test';
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;";

/// Creates the fixture's roles ([`OWNER_ROLE`], [`APP_ROLE`]) once per cluster.
pub async fn ensure_roles(admin: &PgPool) {
    sqlx::raw_sql(CREATE_ROLES)
        .execute(admin)
        .await
        .expect("create the CRM fixture's roles");
}

/// Creates the CRM's schema in the (empty) database of `pool`.
pub async fn create_crm_schema(pool: &PgPool) {
    sqlx::raw_sql(CRM_SCHEMA)
        .execute(pool)
        .await
        .expect("create the CRM fixture schema");
}

/// A lead as the CRM inserts it. `None` in a nullable column is written as NULL, not as the
/// column's default, because the CRM's Hibernate entity writes every column.
#[derive(Debug, Clone)]
pub struct CrmLead {
    pub company_name: String,
    pub contact_person: Option<String>,
    pub email: Option<String>,
    pub business_type: Option<String>,
    pub territory_id: Option<String>,
    pub status: String,
    pub owner_user_id: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub clock_stopped_at: Option<DateTime<Utc>>,
    pub t3_followup_sent: Option<bool>,
    pub t7_followup_sent: Option<bool>,
    pub followup_count: Option<i32>,
    pub metadata: Option<serde_json::Value>,
    pub contact_blocked: Option<bool>,
    pub consent_revoked_at: Option<DateTime<Utc>>,
    pub gdpr_deleted: Option<bool>,
}

impl CrmLead {
    /// An ACTIVE, contactable lead registered at `at`, owned by `owner`.
    pub fn active(owner: &str, at: DateTime<Utc>) -> CrmLead {
        CrmLead {
            company_name: "Gasthaus Test".to_owned(),
            contact_person: Some("Frau Test".to_owned()),
            email: Some("lead@example.com".to_owned()),
            business_type: Some("RESTAURANT".to_owned()),
            territory_id: Some("DE".to_owned()),
            status: "ACTIVE".to_owned(),
            owner_user_id: Some(owner.to_owned()),
            registered_at: at,
            clock_stopped_at: None,
            t3_followup_sent: Some(false),
            t7_followup_sent: Some(false),
            followup_count: Some(0),
            metadata: Some(serde_json::json!({ "emailConsent": true })),
            contact_blocked: Some(false),
            consent_revoked_at: None,
            gdpr_deleted: Some(false),
        }
    }

    /// Inserts the lead with naive UTC timestamps; returns its id.
    pub async fn insert<'e, E>(&self, db: E) -> i64
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        sqlx::query_scalar(
            "INSERT INTO leads (company_name, contact_person, email, business_type, territory_id,
                 status, owner_user_id, registered_at, clock_stopped_at, t3_followup_sent,
                 t7_followup_sent, followup_count, metadata, contact_blocked, consent_revoked_at,
                 gdpr_deleted, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     'crm-import', $17, $17)
             RETURNING id",
        )
        .bind(&self.company_name)
        .bind(&self.contact_person)
        .bind(&self.email)
        .bind(&self.business_type)
        .bind(&self.territory_id)
        .bind(&self.status)
        .bind(&self.owner_user_id)
        .bind(self.registered_at.naive_utc())
        .bind(self.clock_stopped_at.map(|t| t.naive_utc()))
        .bind(self.t3_followup_sent)
        .bind(self.t7_followup_sent)
        .bind(self.followup_count)
        .bind(&self.metadata)
        .bind(self.contact_blocked)
        .bind(self.consent_revoked_at.map(|t| t.naive_utc()))
        .bind(self.gdpr_deleted)
        .bind(Utc::now().naive_utc())
        .fetch_one(db)
        .await
        .expect("insert a CRM lead")
    }
}

/// The CRM's GDPR consent withdrawal: `contact_blocked`, `consent_revoked_at`/`_by`; `metadata`
/// is left as it was.
pub async fn withdraw_consent_gdpr(pool: &PgPool, lead_id: i64, by: &str) {
    sqlx::query(
        "UPDATE leads SET contact_blocked = TRUE, consent_revoked_at = $2, consent_revoked_by = $3,
                version = version + 1, updated_at = $2
         WHERE id = $1",
    )
    .bind(lead_id)
    .bind(Utc::now().naive_utc())
    .bind(by)
    .execute(pool)
    .await
    .expect("withdraw consent");
}

/// Records `status` (OPT_IN, OPT_OUT, …) for the lead's EMAIL channel in `lead_consent`.
pub async fn set_email_consent(pool: &PgPool, lead_id: i64, status: &str) {
    sqlx::query(
        "INSERT INTO lead_consent (lead_id, channel, status, occurred_at, source)
         VALUES ($1, 'EMAIL', $2, $3, 'CRM_UI')
         ON CONFLICT (lead_id, channel) DO UPDATE
         SET status = EXCLUDED.status, occurred_at = EXCLUDED.occurred_at",
    )
    .bind(lead_id)
    .bind(status)
    .bind(Utc::now().naive_utc())
    .execute(pool)
    .await
    .expect("record e-mail consent");
}

/// Adds `user_id` as a collaborator of the lead, where the CRM keeps collaborators.
pub async fn add_collaborator(pool: &PgPool, lead_id: i64, user_id: &str) {
    sqlx::query(
        "INSERT INTO lead_collaborators (lead_id, user_id, added_at, added_by)
         VALUES ($1, $2, $3, 'crm-ui')",
    )
    .bind(lead_id)
    .bind(user_id)
    .bind(Utc::now().naive_utc())
    .execute(pool)
    .await
    .expect("add collaborator");
}

/// Removes a collaborator of the lead.
pub async fn remove_collaborator(pool: &PgPool, lead_id: i64, user_id: &str) {
    sqlx::query("DELETE FROM lead_collaborators WHERE lead_id = $1 AND user_id = $2")
        .bind(lead_id)
        .bind(user_id)
        .execute(pool)
        .await
        .expect("remove collaborator");
}

/// What the CRM's older (now switched-off) follow-up automation wrote for a delivered follow-up:
/// the lead's flag and a `lead_activities` NOTE with `followup_type`. `kind` is `t3` or `t7`.
pub async fn record_legacy_followup(pool: &PgPool, lead_id: i64, kind: &str, at: DateTime<Utc>) {
    let (flag_sql, followup_type) = match kind {
        "t3" => (
            "UPDATE leads SET t3_followup_sent = TRUE, last_followup_at = $2,
                    followup_count = COALESCE(followup_count, 0) + 1, version = version + 1
             WHERE id = $1",
            "T3_FOLLOWUP",
        ),
        _ => (
            "UPDATE leads SET t7_followup_sent = TRUE, last_followup_at = $2,
                    reminder_sent_at = $2, followup_count = COALESCE(followup_count, 0) + 1,
                    version = version + 1
             WHERE id = $1",
            "T7_FOLLOWUP",
        ),
    };
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(flag_sql)
        .bind(lead_id)
        .bind(at.naive_utc())
        .execute(&mut *tx)
        .await
        .expect("mark legacy follow-up");
    sqlx::query(
        "INSERT INTO lead_activities (lead_id, user_id, activity_type, activity_date, description,
                                      metadata)
         VALUES ($1, 'SYSTEM', 'NOTE', $2, 'Automatisches Follow-up (Altsystem)',
                 jsonb_build_object('followup_type', $3::text, 'automated', true))",
    )
    .bind(lead_id)
    .bind(at.naive_utc())
    .bind(followup_type)
    .execute(&mut *tx)
    .await
    .expect("insert legacy follow-up activity");
    tx.commit().await.expect("commit");
}

/// A CRM form: the whole row as Hibernate loaded it, saved later with `WHERE version = ?`.
#[derive(Debug, Clone)]
pub struct LoadedForm {
    pub lead_id: i64,
    pub version: i64,
    pub status: String,
    pub t7_followup_sent: Option<bool>,
    pub t3_followup_sent: Option<bool>,
}

/// Loads the lead into a form.
pub async fn load_form(pool: &PgPool, lead_id: i64) -> LoadedForm {
    let (version, status, t3, t7): (i64, String, Option<bool>, Option<bool>) = sqlx::query_as(
        "SELECT version, status, t3_followup_sent, t7_followup_sent FROM leads WHERE id = $1",
    )
    .bind(lead_id)
    .fetch_one(pool)
    .await
    .expect("load lead form");
    LoadedForm {
        lead_id,
        version,
        status,
        t3_followup_sent: t3,
        t7_followup_sent: t7,
    }
}

/// Saves the form as Hibernate does (every column it loaded, `version` checked and incremented);
/// returns whether the optimistic lock let it through.
pub async fn save_form(pool: &PgPool, form: &LoadedForm) -> bool {
    let done = sqlx::query(
        "UPDATE leads SET status = $3, t3_followup_sent = $4, t7_followup_sent = $5,
                version = version + 1, updated_at = $6
         WHERE id = $1 AND version = $2",
    )
    .bind(form.lead_id)
    .bind(form.version)
    .bind(&form.status)
    .bind(form.t3_followup_sent)
    .bind(form.t7_followup_sent)
    .bind(Utc::now().naive_utc())
    .execute(pool)
    .await
    .expect("save lead form");
    done.rows_affected() == 1
}
