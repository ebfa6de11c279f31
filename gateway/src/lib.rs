//! The follow-up gateway. It reads the projector's figures (never the CRM's tables) and serves
//! them as JSON, as a pushed SSE stream and as the cockpit page, behind JWT auth with roles. It
//! reads through the read model (`followup-readmodel`), not the projector crate, so it builds and
//! ships without the projector's NATS consumer:
//!
//! - `GET /api/followup/metrics`, `GET /api/followup/runs`: JSON through the read model's
//!   functions ([`followup_readmodel::load_figures`], [`followup_readmodel::load_recent_runs`]).
//! - `GET /api/dashboard/followup-stream`: SSE frames pushed by the [`hub`] when the projector's
//!   core-NATS notice says a scope's figures changed.
//! - `GET /`: the cockpit page compiled into the binary; `POST /api/session` trades the page's
//!   token for an HttpOnly cookie.
//! - `/metrics`, `/healthz`, `/readyz`, `/openapi.json`.
//!
//! The binary `followup-gateway` is a thin shell over [`run_until_stopped`] and [`auth::dev_token`].

pub mod api;
pub mod auth;
pub mod config;
pub mod cors;
pub mod error;
pub mod hub;
pub mod insights;
pub mod limits;
mod listen;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod server;
pub mod state;
pub mod unsubscribe;

pub use config::{Cli, Command, DevTokenArgs, GatewayConfig, JwtConfig};
pub use server::{
    RouterOptions, router, router_with, run_until_stopped, run_with_metrics_listener,
};
