//! The start-up check of the templates: only known placeholders, and every template renders for
//! sample leads covering each branch a template may take on the data, into a non-empty subject
//! and a body that carries the unsubscribe link. A template that fails here would otherwise fail
//! for some leads in the middle of a run.

use std::collections::BTreeSet;

use chrono::TimeZone;
use followup_contract::FollowupKind;

use super::render::describe;
use super::sources::{EMBEDDED, PLACEHOLDERS, names};
use super::{Renderer, TemplateError};
use crate::due::DueLead;

impl Renderer {
    /// Checks every template: only known placeholders, and each renders for sample leads of
    /// both territories (with and without contact person) into a non-empty subject and a body
    /// that carries the unsubscribe link.
    pub(super) fn validate(&self) -> Result<(), TemplateError> {
        self.check_placeholders()?;
        self.check_sample_renders()
    }

    /// Refuses the first template (in the order of [`EMBEDDED`]) that uses a placeholder
    /// neither in [`PLACEHOLDERS`] nor a global of the environment.
    fn check_placeholders(&self) -> Result<(), TemplateError> {
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
        Ok(())
    }

    /// Renders both kinds for every branch a template may take on the data: territory, contact
    /// person, business type, month (season).
    fn check_sample_renders(&self) -> Result<(), TemplateError> {
        for territory in [Some("DE"), Some("CH"), None] {
            for contact in [Some("Frau Muster"), None] {
                for business_type in [Some("RESTAURANT"), None] {
                    let lead = sample_lead(territory, contact, business_type);
                    for month in 1..=12 {
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
}

/// A contactable lead with these optional fields set or empty.
fn sample_lead(
    territory: Option<&str>,
    contact: Option<&str>,
    business_type: Option<&str>,
) -> DueLead {
    DueLead {
        id: 1,
        company_name: "Muster GmbH".into(),
        contact_person: contact.map(str::to_owned),
        email: Some("muster@example.com".into()),
        business_type: business_type.map(str::to_owned),
        territory_id: territory.map(str::to_owned),
        owner_user_id: None,
        metadata: serde_json::json!({"emailConsent": true}),
        contactable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::sources::{BODY_T3, BODY_T7, FOOTER_CH, FOOTER_DE, SUBJECT_T3, SUBJECT_T7};
    use super::super::test_support::{dir_with, links};
    use super::*;

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
