//! Links, leads, dates and template directories shared by the template tests.

use chrono::DateTime;
use chrono_tz::Tz;

use super::UnsubscribeLinks;
use super::sources::EMBEDDED;
use crate::due::DueLead;

/// Links to a CRM host, signed with a fixed secret.
pub fn links() -> UnsubscribeLinks {
    UnsubscribeLinks::new("https://crm.example.com", b"secret".to_vec())
}

/// Lead 7, with a line break in its company name, padding around its address and `KANTINE` in
/// its metadata for when the business type column is empty.
pub fn lead(business_type: Option<&str>, territory: &str) -> DueLead {
    DueLead {
        id: 7,
        company_name: "Gasthaus\nZur Post".into(),
        contact_person: Some("Herr Maier".into()),
        email: Some(" wirt@example.com ".into()),
        business_type: business_type.map(str::to_owned),
        territory_id: Some(territory.into()),
        owner_user_id: None,
        metadata: serde_json::json!({"emailConsent": true, "businessType": "KANTINE"}),
        contactable: true,
    }
}

/// 9 a.m. in Berlin on the 15th of `month` 2026.
pub fn at(month: u32) -> DateTime<Tz> {
    use chrono::TimeZone;
    chrono_tz::Europe::Berlin
        .with_ymd_and_hms(2026, month, 15, 9, 0, 0)
        .unwrap()
}

/// A template directory with the embedded texts, except `overrides` (name, text).
pub fn dir_with(overrides: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in EMBEDDED {
        let text = overrides
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(text, |(_, t)| *t);
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}
