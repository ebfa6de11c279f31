//! Bringing the world up: private Postgres and NATS, the database, the three services with the
//! environment an operator would give them, a probe lead, and the suite's own connections. The
//! database is the CRM's: its production schema (the test kit's fixture) before our migrations.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use followup_testkit::crm;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Options;
use crate::faults::{World, wait_until};
use crate::nats::NatsCluster;
use crate::postgres::PrivatePostgres;
use crate::services::Service;

/// Secret of the gateway's development JWTs (the suite signs none; the gateway needs one).
const JWT_SECRET: &str = "fault-suite-jwt-secret-0123456789abcdef";

/// Starts everything under `dir`; the mail log is `dir/mails.jsonl`.
pub async fn start_world(options: &Options, dir: &Path) -> anyhow::Result<World> {
    let nats = NatsCluster::start(options.nodes, dir)?;
    let postgres = PrivatePostgres::start(dir)?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.url("postgres"))
        .await
        .context("connecting to the private Postgres")?;
    followup_testkit::crm::ensure_roles(&admin).await;
    sqlx::query("CREATE DATABASE followup_faults")
        .execute(&admin)
        .await?;
    // Sessions that set no TimeZone (the services', `verify`'s) run far from UTC: a naive UTC
    // timestamp read or written as local time would be 14 hours off.
    sqlx::query("ALTER DATABASE followup_faults SET TimeZone = 'Pacific/Kiritimati'")
        .execute(&admin)
        .await?;
    admin.close().await;
    let database_url = postgres.url("followup_faults");
    // The suite writes as the CRM does, from sessions in the CRM's time zone.
    let connect: PgConnectOptions = database_url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(6)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(connect.options([("TimeZone", crm::CRM_SESSION_TIME_ZONE)]))
        .await?;
    // The CRM's production schema first (its tables, triggers, RLS, Flyway history), then ours,
    // as on the CRM's database.
    crm::create_crm_schema(&pool).await;
    followup_infra::migrate_database(&pool).await?;

    let urls = nats.urls();
    let replicas = options.nodes.to_string();
    let common = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut env = vec![
            ("DATABASE_URL".to_owned(), database_url.clone()),
            ("NATS_URL".to_owned(), urls.clone()),
            ("STREAM_REPLICAS".to_owned(), replicas.clone()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    };
    let mail_log = dir.join("mails.jsonl");
    let mail_log = mail_log.to_string_lossy().to_string();
    let bin = &options.bin_dir;
    let mut producer = Service::new(
        "producer",
        bin,
        "followup-producer",
        common(&[
            ("FOLLOWUP_CRON", "*/3 * * * * *"),
            ("MAILER", "log"),
            ("MAILER_LOG_FILE", &mail_log),
            // A killed run's claims are taken over after this long.
            ("FOLLOWUP_CLAIM_TIMEOUT_SECS", "6"),
            ("FOLLOWUP_BATCH_SIZE", "200"),
        ]),
        dir,
    );
    let mut projector = Service::new("projector", bin, "followup-projector", common(&[]), dir);
    let mut gateway = Service::new(
        "gateway",
        bin,
        "followup-gateway",
        common(&[("JWT_SECRET", JWT_SECRET)])
            .into_iter()
            .filter(|(k, _)| k != "STREAM_REPLICAS")
            .collect(),
        dir,
    );
    producer.start()?;
    projector.start()?;
    gateway.start()?;

    let servers: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::ConnectOptions::new()
        .name("followup-faults")
        .max_reconnects(None)
        .connect(servers)
        .await
        .context("connecting to the suite's NATS")?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);

    for service in [&producer, &projector, &gateway] {
        wait_until(Duration::from_secs(120), || service.answers("/readyz"))
            .await
            .with_context(|| {
                format!(
                    "{} not ready; see {}",
                    service.name,
                    service.log_path().display()
                )
            })?;
    }
    let probe_lead: i64 = sqlx::query_scalar(
        "INSERT INTO leads (company_name, status, owner_user_id, registered_at, created_by, \
                            created_at, updated_at) \
         VALUES ('Probe AG', 'REGISTERED', 'probe-0', now() AT TIME ZONE 'UTC', 'faults', \
                 now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC') \
         RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let mut world = World {
        nats,
        postgres,
        producer,
        projector,
        gateway,
        pool,
        js,
        probe_lead,
        probes: 0,
        poison: Vec::new(),
        refused: 0,
    };
    world
        .probe()
        .await
        .context("the pipeline does not carry a first change")?;
    Ok(world)
}
