//! The [`Renderer`]: compiles the templates once (strict about undefined placeholders), has them
//! validated, and turns a claimed lead into an [`Email`] with the placeholders filled from the
//! lead, the CRM's terms and the local month.

use std::path::Path;

use chrono::{DateTime, Datelike};
use chrono_tz::Tz;
use followup_contract::FollowupKind;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::sources::{self, FOOTER_CH, FOOTER_DE, names};
use super::terms::{business_terms, season, seasonal_products};
use super::{Email, TemplateError, UnsubscribeLinks, message_id};
use crate::due::DueLead;

/// Validated templates plus the link signer: turns a claimed lead into an [`Email`].
#[derive(Debug)]
pub struct Renderer {
    pub(super) env: Environment<'static>,
    links: UnsubscribeLinks,
    /// `embedded` or the directory the templates came from (for logs).
    pub origin: String,
}

impl Renderer {
    /// The templates compiled into the binary.
    pub fn embedded(links: UnsubscribeLinks) -> Result<Renderer, TemplateError> {
        Renderer::new(sources::embedded(), links, "embedded".into())
    }

    /// The templates in `dir` (`FOLLOWUP_TEMPLATE_DIR`): every file the producer needs must be
    /// there (a misspelt file name must not silently fall back to the built-in text); further
    /// `*.txt` files are loaded too, for `{% include %}`.
    pub fn from_dir(dir: &Path, links: UnsubscribeLinks) -> Result<Renderer, TemplateError> {
        let sources = sources::read_dir(dir)?;
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

/// A MiniJinja error in one line: kind, detail (which names an undefined placeholder) and
/// position.
pub(super) fn describe(err: &minijinja::Error) -> String {
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
    use super::super::sources::SUBJECT_T3;
    use super::super::test_support::{at, dir_with, lead, links};
    use super::*;

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

    #[test]
    fn a_template_directory_replaces_the_embedded_texts() {
        let dir = dir_with(&[(SUBJECT_T3, "Proben für {{ company|upper }}")]);
        let r = Renderer::from_dir(dir.path(), links()).unwrap();
        let email = r
            .render(&lead(None, "DE"), FollowupKind::T3, at(1))
            .unwrap();
        assert_eq!(email.subject, "Proben für GASTHAUS ZUR POST");
    }
}
