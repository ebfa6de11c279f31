//! Producer integration tests against real Postgres, a private nats-server per test and, for
//! `MAILER=smtp`, a real SMTP server per test (Python's aiosmtpd: `python3 -m pip install aiosmtpd`).

mod crm_schema;
mod relay;
mod rules;
mod run_once;
mod serve;
mod smtp;
mod smtp_server;
mod support;
mod trigger;
mod unsubscribe;
