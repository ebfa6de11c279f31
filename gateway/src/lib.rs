//! The follow-up gateway: reads the projector's figures and serves them as JSON, as a pushed SSE
//! stream and as the cockpit page, with JWT auth and RBAC.

pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod metrics;
