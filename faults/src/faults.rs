//! The faults, and how the suite measures recovery from each: the time from the end of the fault
//! (process restarted, server back) until a fresh change of a probe lead committed in the CRM
//! shows in the projection — the whole path outbox → relay → JetStream → projector → Postgres.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use sqlx::PgPool;

use crate::nats::NatsCluster;
use crate::postgres::PrivatePostgres;
use crate::rng::Rng;
use crate::services::Service;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillProducer,
    KillProjector,
    KillGateway,
    NatsOutage,
    PostgresRestart,
    NatsNodeLoss,
    Poison,
}

impl Fault {
    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Fault::KillProducer => "SIGKILL producer (scheduler + relay)",
            Fault::KillProjector => "SIGKILL projector",
            Fault::KillGateway => "SIGKILL gateway",
            Fault::NatsOutage => "NATS stopped (all nodes)",
            Fault::PostgresRestart => "Postgres restarted",
            Fault::NatsNodeLoss => "one of 3 NATS nodes killed",
            Fault::Poison => "poison messages",
        }
    }
}

/// Everything a fault acts on.
pub struct World {
    pub nats: NatsCluster,
    pub postgres: PrivatePostgres,
    pub producer: Service,
    pub projector: Service,
    pub gateway: Service,
    /// The suite's own connections (they reconnect by themselves, like the services').
    pub pool: PgPool,
    pub js: jetstream::Context,
    pub probe_lead: i64,
    pub probes: u64,
    /// Stream sequences of the poison messages published so far.
    pub poison: Vec<u64>,
    /// Poison payloads NATS itself refused (over max_payload): never in the stream.
    pub refused: u64,
}

/// Poison messages published per injection (besides the one NATS must refuse).
const POISON_BODIES: usize = 4;

/// Timings of one suite mode.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    pub nats_outage: Duration,
    pub postgres_down: Duration,
    pub node_down: Duration,
}

/// One injection: whether it is confirmed to have happened, and the recovery time.
#[derive(Debug)]
pub struct Injection {
    /// Why the fault is not confirmed injected, if it is not (a phase with such an injection
    /// proves nothing about that fault, so it fails).
    pub unconfirmed: Option<String>,
    pub recovery: Duration,
}

impl World {
    /// Injects `fault` once; returns whether it is confirmed and the recovery time. A fault is
    /// confirmed when what the suite can see of it happened: a killed service or NATS node was
    /// running and ended by the SIGKILL; every NATS node, or Postgres, refused connections when
    /// stopped and still at the end of the outage; every poison message was stored in the stream.
    pub async fn inject(
        &mut self,
        fault: Fault,
        rng: &mut Rng,
        d: &Durations,
    ) -> anyhow::Result<Injection> {
        let unconfirmed = match fault {
            Fault::KillProducer | Fault::KillProjector | Fault::KillGateway => {
                let service = match fault {
                    Fault::KillProducer => &mut self.producer,
                    Fault::KillProjector => &mut self.projector,
                    _ => &mut self.gateway,
                };
                let killed = service.kill();
                tokio::time::sleep(rng.millis(100, 2000)).await;
                service.start()?;
                let unconfirmed = killed.err();
                if fault == Fault::KillGateway {
                    let started = Instant::now();
                    wait_until(Duration::from_secs(120), || self.gateway.answers("/readyz"))
                        .await?;
                    return Ok(Injection {
                        unconfirmed,
                        recovery: started.elapsed(),
                    });
                }
                unconfirmed
            }
            Fault::NatsOutage => {
                let stopped = self.nats.stop_all();
                tokio::time::sleep(d.nats_outage).await;
                let still = self.nats.all_down();
                self.nats.start_all()?;
                stopped
                    .and(still.map_err(|e| format!("at the end of the outage: {e}")))
                    .err()
            }
            Fault::PostgresRestart => {
                let mode = if rng.below(2) == 0 {
                    "fast"
                } else {
                    "immediate"
                };
                self.postgres.stop_server(mode)?;
                let stopped = self.postgres.down();
                tokio::time::sleep(d.postgres_down).await;
                let still = self.postgres.down();
                self.postgres.start_server()?;
                stopped
                    .and(still.map_err(|e| format!("at the end of the outage: {e}")))
                    .err()
            }
            Fault::NatsNodeLoss => {
                let node = rng.below(self.nats.size() as u64) as usize;
                let killed = self.nats.kill_node(node);
                // The load goes on with two of three nodes (a quorum) for a while.
                tokio::time::sleep(d.node_down).await;
                self.nats.start_node(node)?;
                killed.err()
            }
            Fault::Poison => {
                let started = Instant::now();
                let published = self.publish_poison(rng).await?;
                wait_until(Duration::from_secs(120), || async {
                    let dead: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM projection_dead_letters \
                         WHERE stream_sequence = ANY($1)",
                    )
                    .bind(published.iter().map(|s| *s as i64).collect::<Vec<_>>())
                    .fetch_one(&self.pool)
                    .await
                    .unwrap_or(0);
                    dead as usize == published.len()
                })
                .await?;
                return Ok(Injection {
                    unconfirmed: (published.len() != POISON_BODIES).then(|| {
                        format!(
                            "{} of {POISON_BODIES} poison messages stored in the stream",
                            published.len()
                        )
                    }),
                    recovery: started.elapsed(),
                });
            }
        };
        Ok(Injection {
            unconfirmed,
            recovery: self.probe().await?,
        })
    }

    /// Changes the probe lead's owner and waits until the projection has that owner.
    pub async fn probe(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.probes += 1;
        let owner = format!("probe-{}", self.probes);
        // The database may be starting: retry the change itself too.
        wait_until(Duration::from_secs(300), || async {
            sqlx::query(
                "UPDATE leads SET owner_user_id = $2, version = version + 1, \
                        updated_at = now() AT TIME ZONE 'UTC' WHERE id = $1",
            )
            .bind(self.probe_lead)
            .bind(&owner)
            .execute(&self.pool)
            .await
            .is_ok()
        })
        .await?;
        wait_until(Duration::from_secs(300), || async {
            let seen: Option<String> =
                sqlx::query_scalar("SELECT owner_user_id FROM projection_leads WHERE lead_id = $1")
                    .bind(self.probe_lead)
                    .fetch_optional(&self.pool)
                    .await
                    .ok()
                    .flatten();
            seen.as_deref() == Some(owner.as_str())
        })
        .await?;
        Ok(started.elapsed())
    }

    /// Publishes malformed JSON, a CloudEvent of an unknown type, a contract type with broken
    /// data and an oversized body straight onto the stream's subjects; one over NATS's
    /// max_payload, which the server must refuse.
    async fn publish_poison(&mut self, rng: &mut Rng) -> anyhow::Result<Vec<u64>> {
        let id = rng.next();
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("freshplan.lead.changed", b"{not json".to_vec()),
            (
                "freshplan.lead.followup.sent",
                serde_json::json!({"specversion": "1.0", "id": uuid::Uuid::new_v4(),
                    "source": "/faults", "type": "lead.unknown.v1", "time": "2026-01-01T00:00:00Z",
                    "data": {}})
                .to_string()
                .into_bytes(),
            ),
            (
                "freshplan.lead.changed",
                serde_json::json!({"specversion": "1.0", "id": uuid::Uuid::new_v4(),
                    "source": "/faults", "type": "lead.changed.v1",
                    "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
                    "data": {"leadId": "not a number"}})
                .to_string()
                .into_bytes(),
            ),
            (
                "freshplan.lead.followup.processed",
                format!("{{\"junk\": \"{}\"}}", "x".repeat(700 * 1024)).into_bytes(),
            ),
        ];
        let mut sequences = Vec::new();
        for (n, (subject, body)) in bodies.into_iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("poison:{id}:{n}").as_str());
            let ack = self
                .js
                .publish_with_headers(subject, headers, body.into())
                .await?
                .await?;
            // A duplicate was not stored again: it does not count as injected.
            if !ack.duplicate {
                sequences.push(ack.sequence);
            }
        }
        let huge = vec![b'x'; 2 * 1024 * 1024];
        let accepted = match self.js.publish("freshplan.lead.changed", huge.into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        anyhow::ensure!(!accepted, "a 2 MiB message was accepted");
        self.refused += 1;
        self.poison.extend(&sequences);
        Ok(sequences)
    }
}

/// Polls `check` every 100 ms until it is true; an error after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        anyhow::ensure!(started.elapsed() < limit, "no recovery within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
