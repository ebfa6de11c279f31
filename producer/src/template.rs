//! Rendering of the T+3 ("sample request") and T+7 ("follow-up") e-mails with the CRM's
//! placeholders: company, contact, business-type discount and minimum order, seasonal products.

use chrono::{DateTime, Datelike};
use chrono_tz::Tz;
use followup_contract::FollowupKind;
use serde::Serialize;

use crate::due::DueLead;

/// A rendered follow-up, ready for a mailer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    pub lead_id: i64,
    pub kind: FollowupKind,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Stable per lead and kind, so a resend after a crash is recognisable downstream.
    pub message_id: String,
}

/// Discount percent and minimum order (EUR) by business type, as the CRM defines them.
pub fn business_terms(business_type: Option<&str>) -> (u32, u32) {
    match business_type
        .map(|b| b.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("RESTAURANT") => (15, 500),
        Some("HOTEL") => (20, 1000),
        Some("KANTINE") => (25, 2000),
        Some("CATERING") => (10, 300),
        _ => (10, 250),
    }
}

/// Seasonal product suggestions for a month (1–12).
pub fn seasonal_products(month: u32) -> &'static str {
    match month {
        3..=5 => "Spargel-Spezialitäten und Frühlingsmenüs",
        9 | 10 => "Oktoberfest-Spezialitäten",
        11 | 12 => "Weihnachtsmenüs und Festtagsbraten",
        _ => "unsere Saisonklassiker",
    }
}

/// Renders the e-mail for `lead` and `kind` at `now` (local time decides the season).
pub fn render_email(lead: &DueLead, kind: FollowupKind, now: DateTime<Tz>) -> Email {
    let business_type = lead.business_type.clone().or_else(|| {
        lead.metadata
            .get("businessType")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    let (discount, minimum) = business_terms(business_type.as_deref());
    let season = seasonal_products(now.month());
    let greeting = match lead.contact_person.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => format!("Guten Tag {name},"),
        _ => "Guten Tag,".to_owned(),
    };
    let company = &lead.company_name;
    let (subject, body) = match kind {
        FollowupKind::T3 => (
            format!("Ihre kostenlosen Produktproben für {company}"),
            format!(
                "{greeting}\n\nvielen Dank für Ihr Interesse an FreshPlan. Gerne senden wir {company} \
                 kostenlose Produktproben zu.\nAls Neukunde erhalten Sie {discount} % Rabatt ab einem \
                 Mindestbestellwert von {minimum} EUR.\nAktuell empfehlen wir: {season}.\n\n\
                 Mit freundlichen Grüßen\nIhr FreshPlan-Team"
            ),
        ),
        FollowupKind::T7 => (
            format!("Wie können wir {company} unterstützen?"),
            format!(
                "{greeting}\n\nvor einer Woche haben Sie sich bei FreshPlan registriert. Ihr Angebot \
                 steht noch: {discount} % Rabatt ab {minimum} EUR Mindestbestellwert.\nPassend zur \
                 Saison: {season}.\n\nMit freundlichen Grüßen\nIhr FreshPlan-Team"
            ),
        ),
    };
    Email {
        lead_id: lead.id,
        kind,
        to: lead.email.clone().unwrap_or_default().trim().to_owned(),
        subject,
        body,
        message_id: format!("<followup-{}-{}@freshplan.leads>", lead.id, kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_follow_the_business_type_table() {
        assert_eq!(business_terms(Some("RESTAURANT")), (15, 500));
        assert_eq!(business_terms(Some("hotel")), (20, 1000));
        assert_eq!(business_terms(Some("KANTINE")), (25, 2000));
        assert_eq!(business_terms(Some("CATERING")), (10, 300));
        assert_eq!(business_terms(Some("BAECKEREI")), (10, 250));
        assert_eq!(business_terms(None), (10, 250));
        assert!(seasonal_products(4).contains("Spargel"));
        assert!(seasonal_products(10).contains("Oktoberfest"));
        assert!(seasonal_products(12).contains("Weihnacht"));
    }
}
