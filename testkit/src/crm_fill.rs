//! A populated CRM for benchmarks: `$1` leads the way a CRM holds them — 20 % with a
//! collaborator in `lead_collaborators`, 10 % with a follow-up of the CRM's older automation in
//! `lead_activities`, 5 % with an EMAIL OPT_OUT in `lead_consent`, 3 % withdrawn through the GDPR
//! fields, NULL flags and metadata here and there, registered over the last 30 days, owned by 200
//! users (`user0` … `user199`).

/// The CRM's data (run each statement with `$1` = the number of leads), written with our change triggers off (a CRM that held these leads before
/// the pipeline was installed).
pub const CRM_FILL: [&str; 7] = [
    "ALTER TABLE leads DISABLE TRIGGER USER",
    "ALTER TABLE lead_collaborators DISABLE TRIGGER USER",
    "ALTER TABLE lead_consent DISABLE TRIGGER USER",
    "INSERT INTO leads (company_name, contact_person, email, business_type, territory_id, status,
                        owner_user_id, registered_at, t3_followup_sent, t7_followup_sent,
                        followup_count, metadata, contact_blocked, consent_revoked_at, created_by)
     SELECT 'Firma ' || i, 'Kontakt ' || i, 'lead' || i || '@example.com', 'RESTAURANT', 'DE',
            (ARRAY['ACTIVE','ACTIVE','ACTIVE','REGISTERED','CONVERTED','LOST','REMINDER'])[1 + i % 7],
            'user' || (i % 200),
            (now() AT TIME ZONE 'UTC') - (i % 30) * interval '1 day',
            CASE WHEN i % 11 = 0 THEN NULL ELSE i % 3 = 0 END,
            CASE WHEN i % 13 = 0 THEN NULL ELSE FALSE END,
            CASE WHEN i % 17 = 0 THEN NULL ELSE 0 END,
            CASE WHEN i % 19 = 0 THEN NULL ELSE '{\"emailConsent\": true}'::jsonb END,
            i % 33 = 0, CASE WHEN i % 33 = 0 THEN now() AT TIME ZONE 'UTC' END, 'import'
     FROM generate_series(1, $1::bigint) AS i",
    "INSERT INTO lead_collaborators (lead_id, user_id)
     SELECT id, 'user' || ((id + 7) % 200) FROM leads WHERE id % 5 = 0 AND $1::bigint > 0",
    "INSERT INTO lead_activities (lead_id, user_id, activity_type, activity_date, metadata)
     SELECT id, 'SYSTEM', 'NOTE', registered_at + interval '3 days',
            '{\"followup_type\": \"T3_FOLLOWUP\", \"automated\": true}'::jsonb
     FROM leads WHERE id % 10 = 0 AND $1::bigint > 0",
    "INSERT INTO lead_consent (lead_id, channel, status, occurred_at)
     SELECT id, 'EMAIL', 'OPT_OUT', now() AT TIME ZONE 'UTC' FROM leads
     WHERE id % 20 = 0 AND $1::bigint > 0",
];

/// Fills the CRM of `pool` with `leads` leads ([`CRM_FILL`]).
pub async fn fill_crm(pool: &sqlx::PgPool, leads: usize) {
    for sql in CRM_FILL {
        sqlx::query(sql)
            .bind(i64::try_from(leads).expect("a lead count"))
            .execute(pool)
            .await
            .expect("fill the CRM");
    }
}
