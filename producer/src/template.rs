//! Rendering of the T+3 ("sample request") and T+7 ("follow-up") e-mails from the editable
//! templates in `templates/` (MiniJinja, strict about undefined placeholders). The templates are
//! compiled into the binary; `FOLLOWUP_TEMPLATE_DIR` replaces them with the files of a directory.
//! [`Renderer::new`] validates every template against a sample of each kind of lead, so a typo in a
//! placeholder stops the producer at start-up with the template's name and the placeholder, not at
//! 9 a.m. in the middle of a run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike};
use chrono_tz::Tz;
use followup_contract::{FollowupKind, unsubscribe_url};
use minijinja::{Environment, UndefinedBehavior, Value, context};
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
    /// The signed link that withdraws the lead's e-mail consent (also in the body's footer and
    /// the `List-Unsubscribe` header).
    pub unsubscribe_url: String,
}

/// The `Message-ID` of a lead's follow-up of `kind`: the same for every attempt and every resend.
pub fn message_id(lead_id: i64, kind: FollowupKind) -> String {
    format!("<followup-{lead_id}-{}@freshplan.leads>", kind.as_str())
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

/// The season of a month (1–12): `asparagus` (March–May), `oktoberfest` (September–October),
/// `christmas` (November–December), none otherwise.
pub fn season(month: u32) -> Option<&'static str> {
    match month {
        3..=5 => Some("asparagus"),
        9 | 10 => Some("oktoberfest"),
        11 | 12 => Some("christmas"),
        _ => None,
    }
}

/// Seasonal product suggestions for a month (1–12).
pub fn seasonal_products(month: u32) -> &'static str {
    match season(month) {
        Some("asparagus") => "Spargel-Spezialitäten und Frühlingsmenüs",
        Some("oktoberfest") => "Oktoberfest-Spezialitäten",
        Some("christmas") => "Weihnachtsmenüs und Festtagsbraten",
        _ => "unsere Saisonklassiker",
    }
}

/// The e-mail templates: subject and body per kind, a legal footer per territory.
const SUBJECT_T3: &str = "t3_sample_request.subject.txt";
const BODY_T3: &str = "t3_sample_request.body.txt";
const SUBJECT_T7: &str = "t7_followup.subject.txt";
const BODY_T7: &str = "t7_followup.body.txt";
const FOOTER_DE: &str = "footer_de.txt";
const FOOTER_CH: &str = "footer_ch.txt";

/// Every template the producer needs, with the copy compiled into the binary.
const EMBEDDED: [(&str, &str); 6] = [
    (
        SUBJECT_T3,
        include_str!("../../templates/t3_sample_request.subject.txt"),
    ),
    (
        BODY_T3,
        include_str!("../../templates/t3_sample_request.body.txt"),
    ),
    (
        SUBJECT_T7,
        include_str!("../../templates/t7_followup.subject.txt"),
    ),
    (
        BODY_T7,
        include_str!("../../templates/t7_followup.body.txt"),
    ),
    (FOOTER_DE, include_str!("../../templates/footer_de.txt")),
    (FOOTER_CH, include_str!("../../templates/footer_ch.txt")),
];

/// Placeholders every template may use (README of `templates/` describes them).
const PLACEHOLDERS: [&str; 15] = [
    "lead_id",
    "kind",
    "company",
    "contact_person",
    "email",
    "business_type",
    "discount_percent",
    "minimum_order",
    "month",
    "season",
    "seasonal_products",
    "territory",
    "unsubscribe_url",
    // Only in subjects and bodies: the rendered footer of the lead's territory.
    "footer",
    // Jinja's loop variable, which the analysis reports as undeclared.
    "loop",
];

/// Why the templates cannot be used. Every variant names the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template}: cannot read {path}: {reason}")]
    Unreadable {
        template: String,
        path: PathBuf,
        reason: String,
    },
    #[error("template {template}: {reason}")]
    Invalid { template: String, reason: String },
    #[error(
        "template {template}: unknown placeholder `{field}` (known: {})",
        PLACEHOLDERS[..PLACEHOLDERS.len() - 1].join(", ")
    )]
    UnknownPlaceholder { template: String, field: String },
    #[error("template {template}: cannot render for lead {lead_id}: {reason}")]
    Render {
        template: String,
        lead_id: i64,
        reason: String,
    },
    #[error(
        "template {template}: the rendered e-mail does not contain the unsubscribe link (use {{{{ footer }}}} or {{{{ unsubscribe_url }}}})"
    )]
    NoUnsubscribeLink { template: String },
    #[error("template {template}: renders an empty subject")]
    EmptySubject { template: String },
}

/// Where unsubscribe links point and how they are signed.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    base_url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeLinks")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl UnsubscribeLinks {
    pub fn new(base_url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        UnsubscribeLinks {
            base_url: base_url.into(),
            secret: secret.into(),
        }
    }

    /// The signed link of `lead_id`.
    pub fn url(&self, lead_id: i64) -> String {
        unsubscribe_url(&self.base_url, &self.secret, lead_id)
    }
}

/// Validated templates plus the link signer: turns a claimed lead into an [`Email`].
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    links: UnsubscribeLinks,
    /// `embedded` or the directory the templates came from (for logs).
    pub origin: String,
}

impl Renderer {
    /// The templates compiled into the binary.
    pub fn embedded(links: UnsubscribeLinks) -> Result<Renderer, TemplateError> {
        let sources = EMBEDDED
            .iter()
            .map(|(name, source)| (name.to_string(), source.to_string()))
            .collect();
        Renderer::new(sources, links, "embedded".into())
    }

    /// The templates in `dir` (`FOLLOWUP_TEMPLATE_DIR`): every file the producer needs must be
    /// there (a misspelt file name must not silently fall back to the built-in text); further
    /// `*.txt` files are loaded too, for `{% include %}`.
    pub fn from_dir(dir: &Path, links: UnsubscribeLinks) -> Result<Renderer, TemplateError> {
        let mut sources: Vec<(String, String)> = Vec::new();
        for (name, _) in EMBEDDED {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Unreadable {
                template: name.to_owned(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            sources.push((name.to_owned(), text));
        }
        let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Unreadable {
            template: "*".into(),
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !name.ends_with(".txt") || sources.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Unreadable {
                template: name.clone(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            sources.push((name, text));
        }
        Renderer::new(sources, links, dir.display().to_string())
    }

    /// Compiles and validates `sources` (name, text).
    fn new(
        sources: Vec<(String, String)>,
        links: UnsubscribeLinks,
        origin: String,
    ) -> Result<Renderer, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // MiniJinja names the failing expression (`company.name`) only with debug info, which it
        // enables by default in debug builds alone: the start-up error must name it in release too.
        env.set_debug(true);
        for (name, source) in sources {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| TemplateError::Invalid {
                    template: name.clone(),
                    reason: describe(&e),
                })?;
        }
        let renderer = Renderer { env, links, origin };
        renderer.validate()?;
        Ok(renderer)
    }

    /// Checks every template: only known placeholders, and each renders for sample leads of
    /// both territories (with and without contact person) into a non-empty subject and a body
    /// that carries the unsubscribe link.
    fn validate(&self) -> Result<(), TemplateError> {
        let globals: BTreeSet<String> = self.env.globals().map(|(n, _)| n.to_owned()).collect();
        for (name, _) in EMBEDDED {
            let template = self
                .env
                .get_template(name)
                .map_err(|e| TemplateError::Invalid {
                    template: name.to_owned(),
                    reason: describe(&e),
                })?;
            let mut unknown: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !PLACEHOLDERS.contains(&v.as_str()) && !globals.contains(v))
                .collect();
            unknown.sort();
            if let Some(field) = unknown.into_iter().next() {
                return Err(TemplateError::UnknownPlaceholder {
                    template: name.to_owned(),
                    field,
                });
            }
        }
        use chrono::TimeZone;
        // Every branch a template may take on the data: territory, contact person, business
        // type, month (season).
        for territory in [Some("DE"), Some("CH"), None] {
            for contact in [Some("Frau Muster"), None] {
                for business_type in [Some("RESTAURANT"), None] {
                    for month in 1..=12 {
                        let lead = DueLead {
                            id: 1,
                            company_name: "Muster GmbH".into(),
                            contact_person: contact.map(str::to_owned),
                            email: Some("muster@example.com".into()),
                            business_type: business_type.map(str::to_owned),
                            territory_id: territory.map(str::to_owned),
                            owner_user_id: None,
                            metadata: serde_json::json!({"emailConsent": true}),
                            contactable: true,
                        };
                        let now = chrono_tz::Europe::Berlin
                            .with_ymd_and_hms(2026, month, 15, 9, 0, 0)
                            .single()
                            .expect("a plain local time");
                        for kind in [FollowupKind::T3, FollowupKind::T7] {
                            let email = self.render(&lead, kind, now).map_err(|e| match e {
                                TemplateError::Render {
                                    template, reason, ..
                                } => TemplateError::Invalid {
                                    template,
                                    reason: format!(
                                        "does not render for a sample lead (territory {}, contact person {}, business type {}, month {month}): {reason}",
                                        territory.unwrap_or("none"),
                                        if contact.is_some() { "set" } else { "empty" },
                                        business_type.unwrap_or("none"),
                                    ),
                                },
                                other => other,
                            })?;
                            let (subject, body) = names(kind);
                            if email.subject.is_empty() {
                                return Err(TemplateError::EmptySubject {
                                    template: subject.to_owned(),
                                });
                            }
                            if !email.body.contains(&email.unsubscribe_url) {
                                return Err(TemplateError::NoUnsubscribeLink {
                                    template: body.to_owned(),
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders the follow-up of `kind` for `lead` at `now` (the local month decides the season).
    pub fn render(
        &self,
        lead: &DueLead,
        kind: FollowupKind,
        now: DateTime<Tz>,
    ) -> Result<Email, TemplateError> {
        let business_type = lead
            .business_type
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                lead.metadata
                    .get("businessType")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .map(|b| b.trim().to_ascii_uppercase());
        let (discount, minimum) = business_terms(business_type.as_deref());
        let month = now.month();
        let territory = lead
            .territory_id
            .as_deref()
            .map(|t| t.trim().to_ascii_uppercase())
            .filter(|t| !t.is_empty());
        let unsubscribe_url = self.links.url(lead.id);
        let contact_person = lead
            .contact_person
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let to = lead.email.as_deref().unwrap_or_default().trim().to_owned();
        let ctx = context! {
            lead_id => lead.id,
            kind => kind.as_str(),
            company => lead.company_name.trim(),
            contact_person => contact_person,
            email => to.clone(),
            business_type => business_type,
            discount_percent => discount,
            minimum_order => minimum,
            month => month,
            season => season(month),
            seasonal_products => seasonal_products(month),
            territory => territory.clone(),
            unsubscribe_url => unsubscribe_url.clone(),
        };
        // Other territories get the German footer: the company's legal seat.
        let footer_name = match territory.as_deref() {
            Some("CH") => FOOTER_CH,
            _ => FOOTER_DE,
        };
        let footer = self.render_one(footer_name, lead.id, ctx.clone())?;
        let ctx = context! { footer => footer, ..ctx };
        let (subject_name, body_name) = names(kind);
        // A subject is one header line, whatever the company name contains.
        let subject = self
            .render_one(subject_name, lead.id, ctx.clone())?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut body = self.render_one(body_name, lead.id, ctx)?;
        body.truncate(body.trim_end().len());
        body.push('\n');
        Ok(Email {
            lead_id: lead.id,
            kind,
            to,
            subject,
            body,
            message_id: message_id(lead.id, kind),
            unsubscribe_url,
        })
    }

    fn render_one(&self, name: &str, lead_id: i64, ctx: Value) -> Result<String, TemplateError> {
        let render = |name: &str| self.env.get_template(name)?.render(ctx);
        render(name).map_err(|e| TemplateError::Render {
            template: name.to_owned(),
            lead_id,
            reason: describe(&e),
        })
    }
}

fn names(kind: FollowupKind) -> (&'static str, &'static str) {
    match kind {
        FollowupKind::T3 => (SUBJECT_T3, BODY_T3),
        FollowupKind::T7 => (SUBJECT_T7, BODY_T7),
    }
}

/// A MiniJinja error in one line: kind, detail (which names an undefined placeholder) and
/// position.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> UnsubscribeLinks {
        UnsubscribeLinks::new("https://crm.example.com", b"secret".to_vec())
    }

    fn lead(business_type: Option<&str>, territory: &str) -> DueLead {
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

    fn at(month: u32) -> DateTime<Tz> {
        use chrono::TimeZone;
        chrono_tz::Europe::Berlin
            .with_ymd_and_hms(2026, month, 15, 9, 0, 0)
            .unwrap()
    }

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
        assert_eq!(season(2), None);
        assert_eq!(season(6), None);
    }

    #[test]
    fn embedded_templates_render_every_placeholder() {
        let r = Renderer::embedded(links()).unwrap();
        let email = r
            .render(&lead(Some("hotel"), "DE"), FollowupKind::T3, at(4))
            .unwrap();
        assert_eq!(email.to, "wirt@example.com");
        assert_eq!(
            email.subject,
            "Ihre kostenlosen Produktproben für Gasthaus Zur Post"
        );
        assert!(email.body.starts_with("Guten Tag Herr Maier,"));
        assert!(email.body.contains("20 % Rabatt"), "{}", email.body);
        assert!(email.body.contains("1000 EUR"));
        assert!(email.body.contains("Spargel"));
        assert!(email.body.contains("Amtsgericht Berlin"));
        assert!(email.body.contains("Grüßen"));
        assert!(email.body.contains(&links().url(7)));
        assert_eq!(email.message_id, "<followup-7-t3@freshplan.leads>");

        // Business type from metadata when the column is empty; Swiss footer; T+7 text.
        let email = r
            .render(&lead(None, "ch"), FollowupKind::T7, at(10))
            .unwrap();
        assert!(email.body.contains("25 % Rabatt ab 2000 EUR"));
        assert!(email.body.contains("Oktoberfest"));
        assert!(email.body.contains("CHE-000.000.000"));
        assert!(email.body.contains("Grüssen"));
        assert!(!email.body.contains("Amtsgericht"));
        assert_eq!(
            email.subject,
            "Wie können wir Gasthaus Zur Post unterstützen?"
        );
    }

    fn dir_with(overrides: &[(&str, &str)]) -> tempfile::TempDir {
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

    #[test]
    fn a_template_directory_replaces_the_embedded_texts() {
        let dir = dir_with(&[(SUBJECT_T3, "Proben für {{ company|upper }}")]);
        let r = Renderer::from_dir(dir.path(), links()).unwrap();
        let email = r
            .render(&lead(None, "DE"), FollowupKind::T3, at(1))
            .unwrap();
        assert_eq!(email.subject, "Proben für GASTHAUS ZUR POST");
    }

    #[test]
    fn an_unknown_placeholder_is_named_at_start_up() {
        let dir = dir_with(&[(BODY_T7, "Hallo {{ firma }}\n{{ footer }}")]);
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder {
                template: BODY_T7.into(),
                field: "firma".into()
            }
        );
        assert!(err.to_string().contains("t7_followup.body.txt"));
        assert!(err.to_string().contains("`firma`"));
    }

    #[test]
    fn a_missing_nested_field_or_file_or_link_is_named_at_start_up() {
        // Passes the name check (`company` is known) but fails to render in strict mode.
        let dir = dir_with(&[(SUBJECT_T3, "Proben für {{ company.name }}")]);
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("t3_sample_request.subject.txt") && text.contains("company.name"),
            "{text}"
        );

        let dir = dir_with(&[]);
        std::fs::remove_file(dir.path().join(FOOTER_CH)).unwrap();
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        assert!(
            matches!(err, TemplateError::Unreadable { ref template, .. } if template == FOOTER_CH)
        );

        let dir = dir_with(&[(FOOTER_DE, "FreshPlan GmbH")]);
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        assert!(
            matches!(err, TemplateError::NoUnsubscribeLink { .. }),
            "{err}"
        );

        // Fails only in November and December: found at start-up all the same.
        let dir = dir_with(&[(
            SUBJECT_T7,
            "{% if season == 'christmas' %}{{ company.xmas }}{% else %}Hallo{% endif %}",
        )]);
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        assert!(err.to_string().contains("month 11"), "{err}");

        let dir = dir_with(&[(BODY_T3, "{% if %}")]);
        let err = Renderer::from_dir(dir.path(), links()).unwrap_err();
        assert!(matches!(err, TemplateError::Invalid { ref template, .. } if template == BODY_T3));
    }
}
