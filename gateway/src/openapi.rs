//! `/openapi.json`, generated from the handlers' annotations. The schemas of the figures and runs
//! are derived (`utoipa::ToSchema`) from the types the handlers serialise — `Figures`,
//! `RecentRun` and `Trend` of the read model, [`Runs`] here — under the names clients and
//! `scripts/check-api.sh` know; a test checks that they name exactly the fields those types
//! serialise.

use followup_readmodel::{
    DueClass, Figures, FollowUpFailure, History, HistoryDay, LastFollowUp, LeadFigure, LeadItem,
    LeadPage, NextFollowUp, RecentRun, Trend,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::Runs;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Access token: HS256 (JWT_SECRET) or RS256 (JWT_JWKS); roles admin, manager, sales from realm_access.roles or roles",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
    }
}

/// The gateway's API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "followup-gateway",
        description = "Follow-up cockpit figures: JSON, pushed SSE, session cookie for the cockpit page. Operational endpoints: /metrics (Prometheus), /healthz, /readyz."
    ),
    paths(
        crate::api::get_metrics,
        crate::api::get_stream,
        crate::api::get_metrics_crm_path,
        crate::api::get_stream_crm_path,
        crate::api::get_runs,
        crate::insights::get_leads,
        crate::insights::get_history,
        crate::api::create_session,
        crate::api::delete_session,
        crate::unsubscribe::confirm_unsubscribe,
        crate::unsubscribe::unsubscribe,
    ),
    components(schemas(
        crate::error::ErrorBody,
        Figures,
        RecentRun,
        Runs,
        Trend,
        LeadPage,
        LeadItem,
        LeadFigure,
        DueClass,
        NextFollowUp,
        LastFollowUp,
        FollowUpFailure,
        History,
        HistoryDay
    )),
    modifiers(&Security),
    tags(
        (name = "followup", description = "Cockpit figures"),
        (name = "session", description = "Cookie for the cockpit page"),
        (name = "unsubscribe", description = "Signed unsubscribe links of the follow-up e-mails"),
    )
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use followup_readmodel::Scope;

    fn property_names(doc: &serde_json::Value, schema: &str) -> Vec<String> {
        let mut names: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema} has properties"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    fn keys(value: serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// `gateway/openapi.json` is the committed document the widget package generates its
    /// TypeScript types from (`npm run gen:types` in `widget/`); it must be what the gateway
    /// serves. `UPDATE_OPENAPI=1 cargo test -p followup-gateway openapi` rewrites it.
    #[test]
    fn committed_document_is_the_served_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let served: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &pretty).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == pretty,
            "{} differs from the served document: run UPDATE_OPENAPI=1 cargo test -p \
             followup-gateway openapi, then npm run gen:types in widget/",
            path.display()
        );
    }

    #[test]
    fn schemas_match_the_types_served() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        let figures = Figures {
            pending_t3: 1,
            pending_t7: 2,
            sent_today: 3,
            conversion_rate: 4.5,
            t3_trend: Trend::Up,
            t7_trend: Trend::Flat,
            scope: Scope::Org,
            as_of: Utc::now(),
        };
        assert_eq!(
            property_names(&doc, "Figures"),
            keys(serde_json::to_value(&figures).unwrap())
        );
        let run = RecentRun {
            run_id: "r".into(),
            t3_count: 1,
            t7_count: 2,
            skipped_count: 3,
            error_count: 4,
            processed_at: Utc::now(),
            duration_ms: 5,
        };
        assert_eq!(
            property_names(&doc, "RecentRun"),
            keys(serde_json::to_value(&run).unwrap())
        );
        for path in [
            "/api/followup/metrics",
            "/api/dashboard/followup-stream",
            "/api/followup/runs",
            "/api/session",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} documented");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
