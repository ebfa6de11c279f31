//! The findings of running on the CRM's real production schema (issue 12), one test each: the
//! fixture (`followup_testkit::crm`) holds the CRM's types, NULLs, consent fields, collaborators,
//! RLS and Flyway history; every test database gets it.

use chrono::{Duration, NaiveDateTime, Utc};
use followup_contract::LeadChanged;
use followup_testkit::TestDb;
use followup_testkit::crm::{self, CrmLead};
use sqlx::PgPool;

use crate::support::run_at;

async fn sent_kinds(pool: &PgPool, lead_id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kind FROM followup_deliveries WHERE lead_id = $1 AND status = 'sent' ORDER BY kind",
    )
    .bind(lead_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn last_change(pool: &PgPool, lead_id: i64) -> LeadChanged {
    let data: serde_json::Value = sqlx::query_scalar(
        "SELECT data FROM followup_outbox WHERE event_type = 'lead.changed.v1' AND subject = $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(lead_id.to_string())
    .fetch_one(pool)
    .await
    .unwrap();
    serde_json::from_value(data).expect("the trigger's data reads as lead.changed.v1")
}

#[tokio::test]
async fn a_lead_whose_consent_was_withdrawn_through_the_crms_gdpr_function_is_not_mailed() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let registered = now - Duration::days(4);
    let gdpr = CrmLead::active("u1", registered).insert(&db.pool).await;
    crm::withdraw_consent_gdpr(&db.pool, gdpr, "datenschutz").await;
    let opted_out = CrmLead::active("u1", registered).insert(&db.pool).await;
    crm::set_email_consent(&db.pool, opted_out, "OPT_OUT").await;
    let opted_in = CrmLead::active("u1", registered).insert(&db.pool).await;
    crm::set_email_consent(&db.pool, opted_in, "OPT_IN").await;

    let report = run_at(&db.pool, now).await;

    assert_eq!((report.t3_count, report.skipped_count), (1, 2));
    assert!(
        sent_kinds(&db.pool, gdpr).await.is_empty(),
        "GDPR-withdrawn lead mailed"
    );
    assert!(
        sent_kinds(&db.pool, opted_out).await.is_empty(),
        "OPT_OUT lead mailed"
    );
    assert_eq!(sent_kinds(&db.pool, opted_in).await, vec!["t3".to_owned()]);
    // The change stream tells every module that these two are not contactable.
    assert_eq!(last_change(&db.pool, gdpr).await.contactable, Some(false));
    assert_eq!(
        last_change(&db.pool, opted_out).await.contactable,
        Some(false)
    );
    assert_eq!(
        last_change(&db.pool, opted_in).await.contactable,
        Some(true)
    );
}

#[tokio::test]
async fn one_lead_with_null_metadata_does_not_stop_the_run() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let mut broken = CrmLead::active("u1", now - Duration::days(4));
    broken.metadata = None;
    let broken = broken.insert(&db.pool).await;
    let fine = CrmLead::active("u1", now - Duration::days(4))
        .insert(&db.pool)
        .await;

    let report = run_at(&db.pool, now).await;

    assert_eq!(
        (report.t3_count, report.skipped_count, report.error_count),
        (1, 1, 0)
    );
    assert_eq!(sent_kinds(&db.pool, fine).await, vec!["t3".to_owned()]);
    assert!(
        sent_kinds(&db.pool, broken).await.is_empty(),
        "NULL metadata is no consent"
    );
}

#[tokio::test]
async fn null_flags_mean_false_in_the_claim_and_the_change_event_and_a_null_count_counts_up() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let mut lead = CrmLead::active("u1", now - Duration::days(4));
    lead.t3_followup_sent = None;
    lead.t7_followup_sent = None;
    lead.followup_count = None;
    lead.contact_blocked = None;
    lead.gdpr_deleted = None;
    let id = lead.insert(&db.pool).await;
    let change = last_change(&db.pool, id).await;
    assert_eq!(
        (change.t3_sent, change.t7_sent, change.contactable.unwrap()),
        (false, false, true)
    );

    let report = run_at(&db.pool, now).await;

    assert_eq!(report.t3_count, 1, "a NULL T+3 flag is a T+3 not sent");
    let (count, t3): (Option<i32>, Option<bool>) =
        sqlx::query_as("SELECT followup_count, t3_followup_sent FROM leads WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((count, t3), (Some(1), Some(true)));
}

#[tokio::test]
async fn registered_at_is_utc_in_the_change_event_whatever_the_sessions_time_zone() {
    let db = TestDb::new().await;
    for zone in ["Europe/Berlin", "America/New_York", "Asia/Tokyo"] {
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("SET TimeZone = '{zone}'")))
            .execute(&mut *conn)
            .await
            .unwrap();
        let registered = Utc::now() - Duration::minutes(5);
        let mut lead = CrmLead::active("u1", registered);
        lead.clock_stopped_at = Some(registered + Duration::minutes(1));
        let id = lead.insert(&mut *conn).await;
        let change = last_change(&db.pool, id).await;
        let stored: NaiveDateTime =
            sqlx::query_scalar("SELECT registered_at FROM leads WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(change.registered_at, stored.and_utc(), "session in {zone}");
        assert_eq!(
            change.registered_at.timestamp_micros(),
            registered.timestamp_micros(),
            "session in {zone}"
        );
        assert_eq!(
            change.clock_stopped_at.map(|t| t.timestamp_micros()),
            Some((registered + Duration::minutes(1)).timestamp_micros())
        );
    }
}

#[tokio::test]
async fn a_crm_form_loaded_before_our_run_fails_its_optimistic_lock_after_it() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let mut lead = CrmLead::active("u1", now - Duration::days(8));
    lead.t3_followup_sent = Some(true);
    let id = lead.insert(&db.pool).await;
    let form = crm::load_form(&db.pool, id).await;

    let report = run_at(&db.pool, now).await;
    assert_eq!(report.t7_count, 1);

    assert!(
        !crm::save_form(&db.pool, &form).await,
        "a stale form must fail Hibernate's version check"
    );
    let (status, t7): (String, Option<bool>) =
        sqlx::query_as("SELECT status, t7_followup_sent FROM leads WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), t7), ("REMINDER", Some(true)));
    // A form loaded after our change saves fine.
    let fresh = crm::load_form(&db.pool, id).await;
    assert!(crm::save_form(&db.pool, &fresh).await);
}

#[tokio::test]
async fn collaborators_in_lead_collaborators_are_in_the_change_events() {
    let db = TestDb::new().await;
    let id = CrmLead::active("u1", Utc::now() - Duration::days(1))
        .insert(&db.pool)
        .await;
    crm::add_collaborator(&db.pool, id, "vertrieb.b").await;
    crm::add_collaborator(&db.pool, id, "vertrieb.a").await;
    assert_eq!(
        last_change(&db.pool, id).await.collaborator_user_ids,
        vec!["vertrieb.a".to_owned(), "vertrieb.b".to_owned()]
    );
    crm::remove_collaborator(&db.pool, id, "vertrieb.a").await;
    assert_eq!(
        last_change(&db.pool, id).await.collaborator_user_ids,
        vec!["vertrieb.b".to_owned()]
    );
    // A GDPR erasure takes the lead out of every read model.
    sqlx::query("UPDATE leads SET gdpr_deleted = TRUE, version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(last_change(&db.pool, id).await.deleted);
}

/// Every CRM column we read, with a type change the CRM's own migrations might make.
const CRM_RETYPES: &[&str] = &[
    "ALTER TABLE leads ALTER COLUMN registered_at TYPE timestamptz",
    "ALTER TABLE leads ALTER COLUMN clock_stopped_at TYPE timestamptz",
    "ALTER TABLE leads ALTER COLUMN last_followup_at TYPE timestamptz",
    "ALTER TABLE leads ALTER COLUMN reminder_sent_at TYPE timestamptz",
    "ALTER TABLE leads ALTER COLUMN consent_revoked_at TYPE timestamptz",
    "ALTER TABLE leads ALTER COLUMN status TYPE varchar(40)",
    // Not owner_user_id: the CRM's own RLS policies pin it (its migration must handle them).
    "ALTER TABLE leads ALTER COLUMN email TYPE varchar(320)",
    "ALTER TABLE leads ALTER COLUMN company_name TYPE text",
    "ALTER TABLE leads ALTER COLUMN t3_followup_sent TYPE boolean USING t3_followup_sent",
    "ALTER TABLE leads ALTER COLUMN followup_count TYPE bigint",
    "ALTER TABLE leads ALTER COLUMN metadata TYPE jsonb USING metadata",
    "ALTER TABLE leads ALTER COLUMN contact_blocked TYPE boolean USING contact_blocked",
    "ALTER TABLE leads ALTER COLUMN gdpr_deleted TYPE boolean USING gdpr_deleted",
    "ALTER TABLE lead_collaborators ALTER COLUMN user_id TYPE varchar(100)",
    "ALTER TABLE lead_consent ALTER COLUMN status TYPE varchar(20)",
    "ALTER TABLE lead_activities ALTER COLUMN activity_date TYPE timestamptz",
];

#[tokio::test]
async fn the_crms_alter_column_type_on_every_column_we_read_succeeds_after_our_migrations() {
    let db = TestDb::new().await;
    for statement in CRM_RETYPES {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    // And everything still works on the retyped columns.
    let now = Utc::now();
    let id = CrmLead::active("u1", now - Duration::days(4))
        .insert(&db.pool)
        .await;
    assert_eq!(run_at(&db.pool, now).await.t3_count, 1);
    assert_eq!(sent_kinds(&db.pool, id).await, vec!["t3".to_owned()]);
}

/// `(name, data type, nullable)` of these columns of `leads`, by name.
async fn leads_columns(pool: &PgPool, names: &[&str]) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_name = 'leads' AND column_name = ANY($1) ORDER BY column_name",
    )
    .bind(names)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The CRM's migration that added the follow-up columns (V212), as the CRM wrote it.
const CRM_V212: &str = "
ALTER TABLE leads ADD COLUMN IF NOT EXISTS t3_followup_sent BOOLEAN DEFAULT FALSE;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS t7_followup_sent BOOLEAN DEFAULT FALSE;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS last_followup_at TIMESTAMP;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS followup_count INTEGER DEFAULT 0;";

#[tokio::test]
async fn our_migrations_before_the_crms_follow_up_columns_leave_their_types_to_the_crm() {
    let db = TestDb::crm_only().await;
    // The CRM before V212.
    sqlx::raw_sql(
        "ALTER TABLE leads DROP COLUMN t3_followup_sent, DROP COLUMN t7_followup_sent,
                           DROP COLUMN last_followup_at, DROP COLUMN followup_count",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    followup_infra::migrate_database(&db.pool).await.unwrap();
    // The CRM keeps working between our migration and its own.
    sqlx::query(
        "INSERT INTO leads (company_name, status, registered_at, created_by)
         VALUES ('Vor V212', 'ACTIVE', now() AT TIME ZONE 'UTC', 'crm')",
    )
    .execute(&db.pool)
    .await
    .expect("the CRM inserts a lead between our migrations and its V212");
    sqlx::raw_sql(CRM_V212).execute(&db.pool).await.unwrap();

    let columns = leads_columns(
        &db.pool,
        &[
            "followup_count",
            "last_followup_at",
            "t3_followup_sent",
            "t7_followup_sent",
        ],
    )
    .await;
    let expect = |c: &str, t: &str| (c.to_owned(), t.to_owned(), "YES".to_owned());
    assert_eq!(
        columns,
        vec![
            expect("followup_count", "integer"),
            expect("last_followup_at", "timestamp without time zone"),
            expect("t3_followup_sent", "boolean"),
            expect("t7_followup_sent", "boolean"),
        ]
    );
    let now = Utc::now();
    CrmLead::active("u1", now - Duration::days(4))
        .insert(&db.pool)
        .await;
    assert_eq!(run_at(&db.pool, now).await.t3_count, 1);
}

#[tokio::test]
async fn a_crm_less_install_creates_the_crm_tables_with_the_production_types() {
    let db = TestDb::without_crm().await;
    let types = leads_columns(
        &db.pool,
        &[
            "registered_at",
            "t3_followup_sent",
            "metadata",
            "followup_count",
        ],
    )
    .await;
    let row = |c: &str, t: &str, n: &str| (c.to_owned(), t.to_owned(), n.to_owned());
    assert_eq!(
        types,
        vec![
            row("followup_count", "integer", "YES"),
            row("metadata", "jsonb", "YES"),
            row("registered_at", "timestamp without time zone", "NO"),
            row("t3_followup_sent", "boolean", "YES"),
        ]
    );
    // Migrating again changes nothing, and the pipeline works on it.
    followup_infra::migrate_database(&db.pool).await.unwrap();
    let now = Utc::now();
    CrmLead::active("u1", now - Duration::days(4))
        .insert(&db.pool)
        .await;
    assert_eq!(run_at(&db.pool, now).await.t3_count, 1);
}

#[tokio::test]
async fn our_migrations_never_touch_the_crms_flyway_history() {
    let db = TestDb::crm_only().await;
    let before: Vec<(i32, Option<i32>)> =
        sqlx::query_as("SELECT installed_rank, checksum FROM flyway_schema_history ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    followup_infra::migrate_database(&db.pool).await.unwrap();
    let after: Vec<(i32, Option<i32>)> =
        sqlx::query_as("SELECT installed_rank, checksum FROM flyway_schema_history ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn a_database_migrated_with_the_earlier_migration_texts_still_migrates() {
    let db = TestDb::new().await;
    // What an install of the earlier version recorded for the two rewritten migrations.
    for (version, earlier) in [
        (
            20261129000001_i64,
            "fe3371cd8aed4d92ba71044e767102700105fe67088e839e464a9de1f07788664cacf67b659f5402f7dca48256387edc",
        ),
        (
            20261129000002,
            "3bbf2c5b62dffebbb3819b649b4e377cf9677e3aa016c6b2aecad123866e911c27ddb8f395db4de97585f5029bf284c9",
        ),
    ] {
        sqlx::query(
            "UPDATE _followup_migrations SET checksum = decode($2, 'hex') WHERE version = $1",
        )
        .bind(version)
        .bind(earlier)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    followup_infra::migrate_database(&db.pool)
        .await
        .expect("the rewritten migrations are accepted");
    // A checksum that matches neither text is still refused.
    sqlx::query(
        "UPDATE _followup_migrations SET checksum = '\\x00' WHERE version = 20261129000001",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(followup_infra::migrate_database(&db.pool).await.is_err());
}

async fn connect_as(db: &TestDb, role: &str) -> PgPool {
    followup_infra::connect_database(
        &db.url_as(role),
        4,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_as_a_role_that_does_not_own_the_crm_tables_fail_naming_the_fix() {
    let db = TestDb::crm_only().await;
    let app = connect_as(&db, crm::APP_ROLE).await;
    let err = followup_infra::migrate_database(&app)
        .await
        .expect_err("the application role cannot migrate")
        .to_string();
    assert!(
        err.contains("followup-producer migrate --grant-to followup_app"),
        "{err}"
    );
}

#[tokio::test]
async fn the_services_run_as_an_application_role_once_the_owner_migrated() {
    let db = TestDb::crm_only().await;
    let now = Utc::now();
    let due = CrmLead::active("u1", now - Duration::days(4))
        .insert(&db.pool)
        .await;
    let owner = connect_as(&db, crm::OWNER_ROLE).await;
    followup_infra::migrate_database(&owner).await.unwrap();
    followup_infra::grant_app_role(&owner, crm::APP_ROLE)
        .await
        .unwrap();

    let app = connect_as(&db, crm::APP_ROLE).await;
    followup_infra::prepare_database(&app)
        .await
        .expect("nothing pending, leads visible to the system user");
    let report = run_at(&app, now).await;
    assert_eq!(
        report.t3_count, 1,
        "the app role sees and mails the due lead"
    );
    assert_eq!(sent_kinds(&db.pool, due).await, vec!["t3".to_owned()]);
    // The CRM's own writes through the application role's session still produce events (the
    // trigger writes our outbox with its owner's rights).
    crm::add_collaborator(&app, due, "vertrieb.c").await;
    assert_eq!(
        last_change(&db.pool, due).await.collaborator_user_ids,
        vec!["vertrieb.c".to_owned()]
    );
}

#[tokio::test]
async fn a_role_that_row_level_security_hides_the_leads_from_stops_at_start() {
    let db = TestDb::crm_only().await;
    CrmLead::active("u1", Utc::now()).insert(&db.pool).await;
    // A CRM whose policies do not admit the system user.
    sqlx::raw_sql(
        "ALTER POLICY leads_select ON leads
             USING (owner_user_id = current_setting('app.user_context', true))",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let owner = connect_as(&db, crm::OWNER_ROLE).await;
    followup_infra::migrate_database(&owner).await.unwrap();
    followup_infra::grant_app_role(&owner, crm::APP_ROLE)
        .await
        .unwrap();
    let app = connect_as(&db, crm::APP_ROLE).await;
    let err = followup_infra::prepare_database(&app)
        .await
        .expect_err("an empty view of a populated CRM is an error")
        .to_string();
    assert!(err.contains("row-level security"), "{err}");
    // The owner itself is fine.
    followup_infra::prepare_database(&owner).await.unwrap();
}

/// The contactable rule, case by case: what the CRM's data says, and that every SQL form of it
/// (the triggers' JSON form, the column form the claim, the re-check, the snapshot and `verify`
/// use) and the event the trigger wrote agree.
#[tokio::test]
async fn the_contactable_rule_agrees_in_every_form() {
    let db = TestDb::new().await;
    let at = Utc::now() - Duration::days(1);
    type Tweak = fn(&mut CrmLead);
    let cases: Vec<(&str, Tweak, Option<&str>, bool)> = vec![
        ("consent given", |_| {}, None, true),
        ("consent given, EMAIL OPT_IN", |_| {}, Some("OPT_IN"), true),
        ("EMAIL OPT_OUT", |_| {}, Some("OPT_OUT"), false),
        ("EMAIL PENDING", |_| {}, Some("PENDING"), true),
        ("metadata NULL", |l| l.metadata = None, None, false),
        (
            "metadata {}",
            |l| l.metadata = Some(serde_json::json!({})),
            None,
            false,
        ),
        (
            "emailConsent false",
            |l| l.metadata = Some(serde_json::json!({"emailConsent": false})),
            None,
            false,
        ),
        (
            "emailConsent \"true\" (a string)",
            |l| l.metadata = Some(serde_json::json!({"emailConsent": "true"})),
            None,
            false,
        ),
        ("no e-mail", |l| l.email = None, None, false),
        ("blank e-mail", |l| l.email = Some("  ".into()), None, false),
        (
            "contact_blocked",
            |l| l.contact_blocked = Some(true),
            None,
            false,
        ),
        (
            "contact_blocked NULL",
            |l| l.contact_blocked = None,
            None,
            true,
        ),
        (
            "consent_revoked_at",
            |l| l.consent_revoked_at = Some(Utc::now()),
            None,
            false,
        ),
        ("gdpr_deleted", |l| l.gdpr_deleted = Some(true), None, false),
        ("gdpr_deleted NULL", |l| l.gdpr_deleted = None, None, true),
    ];
    for (name, tweak, consent, expected) in cases {
        let mut lead = CrmLead::active("u1", at);
        tweak(&mut lead);
        let id = lead.insert(&db.pool).await;
        if let Some(status) = consent {
            crm::set_email_consent(&db.pool, id, status).await;
        }
        let (json_form, column_form): (bool, bool) = sqlx::query_as(
            "SELECT followup_contactable(to_jsonb(l)),
                    followup_contactable_row(l.email, l.metadata, l.contact_blocked,
                                             l.consent_revoked_at IS NOT NULL, l.gdpr_deleted)
                    AND NOT followup_email_opted_out(l.id)
             FROM leads l WHERE l.id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let event = last_change(&db.pool, id)
            .await
            .contactable
            .expect("field written");
        assert_eq!(
            (json_form, column_form, event),
            (expected, expected, expected),
            "{name}"
        );
    }
}

/// Three services starting together on a fresh database all migrate (the one that wins applies,
/// the others wait). A `CREATE INDEX CONCURRENTLY` waits for every older snapshot, so waiting
/// in a blocking `pg_advisory_lock` statement deadlocked with it.
#[tokio::test]
async fn services_starting_together_on_a_fresh_database_all_migrate() {
    let db = TestDb::crm_only().await;
    let mut pools = Vec::new();
    for _ in 0..3 {
        pools.push(connect_as(&db, crm::OWNER_ROLE).await);
    }
    let results =
        futures::future::join_all(pools.iter().map(followup_infra::migrate_database)).await;
    for result in results {
        result.expect("every concurrent migration succeeds");
    }
    let invalid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE NOT i.indisvalid",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(invalid, 0, "no index left INVALID");
}

/// Two CRM transactions adding a collaborator to the same lead at the same moment: the later
/// event lists both (the trigger locks the lead before it reads the collaborators), and the
/// event with the larger sequence is the later one.
#[tokio::test]
async fn collaborators_added_concurrently_are_all_in_the_latest_change_event() {
    use sqlx::Connection;
    let db = TestDb::new().await;
    let id = CrmLead::active("u1", Utc::now() - Duration::days(1))
        .insert(&db.pool)
        .await;
    let mut first = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = first.begin().await.unwrap();
    sqlx::query("INSERT INTO lead_collaborators (lead_id, user_id) VALUES ($1, 'erste')")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        sqlx::query("INSERT INTO lead_collaborators (lead_id, user_id) VALUES ($1, 'zweite')")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    });
    // The second insert waits for the first transaction's lock on the lead.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second writer waits for the lead"
    );
    tx.commit().await.unwrap();
    second.await.unwrap();
    assert_eq!(
        last_change(&db.pool, id).await.collaborator_user_ids,
        vec!["erste".to_owned(), "zweite".to_owned()]
    );
}
