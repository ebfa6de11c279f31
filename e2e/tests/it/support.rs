//! The whole pipeline per test: a fresh database, a private nats-server, the producer's outbox
//! relay, the real projector and the gateway on port 0, all in process; tokens; an SSE client.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use followup_gateway::GatewayConfig;
use followup_gateway::auth::{DevClaims, dev_token};
use followup_producer::ProducerMetrics;
use followup_producer::relay::RelayConfig;
use followup_producer::relay::run_relay_until_stopped;
use followup_testkit::{NatsServer, TestDb, eventually};
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "it-secret-0123456789abcdef";

pub struct Stack {
    pub db: TestDb,
    pub nats: NatsServer,
    pub addr: SocketAddr,
    /// The gateway's separate `/metrics` listener, when started with one.
    pub metrics_addr: Option<SocketAddr>,
    /// `/metrics` of the in-process projector and of the relay (producer metrics).
    pub projector_ops: SocketAddr,
    pub relay_ops: SocketAddr,
    pub http: reqwest::Client,
    /// Stops the gateway.
    pub shutdown: CancellationToken,
    /// Stops the relay and the projector.
    pipeline: CancellationToken,
    pub gateway: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> Stack {
        Stack::start_full(tweak, false).await
    }

    /// [`Stack::start_with`]; with `separate_metrics` the gateway serves `/metrics` on a
    /// listener of its own (as with `METRICS_ADDR`), bound here on port 0.
    pub async fn start_full(
        tweak: impl FnOnce(&mut GatewayConfig),
        separate_metrics: bool,
    ) -> Stack {
        if std::env::var_os("RUST_LOG").is_some() {
            followup_infra::telemetry::init_tracing();
        }
        let db = TestDb::new().await;
        let nats = NatsServer::start();
        let pipeline = CancellationToken::new();

        let client = async_nats::connect(nats.url()).await.expect("nats");
        let js = jetstream::new(client);
        followup_infra::ensure_stream(&js).await.expect("stream");
        let relay_metrics = ProducerMetrics::new();
        let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_ops = relay_listener.local_addr().unwrap();
        tokio::spawn(followup_infra::serve_ops(
            relay_listener,
            relay_metrics.registry.clone(),
            followup_infra::Readiness::default(),
            pipeline.clone(),
        ));
        tokio::spawn(run_relay_until_stopped(
            db.pool.clone(),
            js,
            RelayConfig {
                idle_poll: Duration::from_millis(200),
                ..RelayConfig::default()
            },
            relay_metrics,
            pipeline.clone(),
        ));

        let mut projector = followup_projector::Config::new(db.url.clone(), nats.url());
        projector.fetch_wait_ms = 100;
        let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let projector_ops = ops.local_addr().unwrap();
        tokio::spawn(followup_projector::run_until_stopped(
            projector,
            ops,
            pipeline.clone(),
        ));

        let mut config = GatewayConfig::for_tests(&db.url, &nats.url(), SECRET);
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let metrics_listener = if separate_metrics {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr().unwrap());
        let gateway = tokio::spawn(followup_gateway::run_with_metrics_listener(
            config,
            listener,
            metrics_listener,
            shutdown.clone(),
        ));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let stack = Stack {
            db,
            nats,
            addr,
            metrics_addr,
            projector_ops,
            relay_ops,
            http,
            shutdown,
            pipeline,
            gateway: Some(gateway),
        };
        let ready = eventually(Duration::from_secs(30), || async {
            let r = stack.http.get(stack.url("/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "gateway did not become ready");
        stack
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with a bearer token (or none): status and JSON body.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered {status} with non-JSON: {text:?}"));
        (status, body)
    }

    /// The figures at `path` once `check` holds (the pipeline is asynchronous).
    pub async fn wait_for_figures(
        &self,
        path: &str,
        token: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let found = eventually(Duration::from_secs(30), || {
            let fut = self.get_json(path, Some(token));
            async {
                let (status, body) = fut.await;
                (status == 200 && check(&body)).then_some(body)
            }
        })
        .await;
        match found {
            Some(body) => body,
            None => {
                let (status, body) = self.get_json(path, Some(token)).await;
                panic!("figures at {path} never satisfied the check; last {status} {body}")
            }
        }
    }

    /// Stops the gateway and waits for it; returns what `run` returned.
    pub async fn stop_gateway(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let handle = self.gateway.take().expect("gateway running");
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("gateway stops within 10 s")
            .expect("gateway task")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.pipeline.cancel();
    }
}

/// A token signed with the test secret.
pub fn token(user: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    dev_token(
        SECRET,
        &DevClaims {
            user_claim: "preferred_username",
            user,
            roles: &roles,
            ttl: Duration::from_secs(3600),
            issuer: None,
            audience: None,
        },
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An admin token that expired an hour ago (well past the leeway).
pub fn expired_token() -> String {
    let claims = serde_json::json!({"preferred_username": "boss", "roles": ["admin"], "exp": Utc::now().timestamp() - 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// An admin token signed with another key.
pub fn foreign_token() -> String {
    let claims = serde_json::json!({"preferred_username": "boss", "roles": ["admin"], "exp": Utc::now().timestamp() + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-0123456789").unwrap(),
    )
    .unwrap()
}

/// An unsigned admin token (`alg: none`).
pub fn none_token() -> String {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(
        serde_json::json!({"preferred_username": "boss", "roles": ["admin"], "exp": Utc::now().timestamp() + 3600})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{claims}.")
}

/// Inserts a lead as the CRM would: ACTIVE, clock running, nothing sent (pending T+3), its
/// collaborators in `lead_collaborators`.
pub async fn insert_lead(
    pool: &sqlx::PgPool,
    owner: &str,
    collaborators: &[&str],
    registered_at: DateTime<Utc>,
) -> i64 {
    let id = followup_testkit::crm::CrmLead::active(owner, registered_at)
        .insert(pool)
        .await;
    for user in collaborators {
        followup_testkit::crm::add_collaborator(pool, id, user).await;
    }
    id
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("frame data is JSON")
    }

    pub fn id_u64(&self) -> u64 {
        self.id
            .as_deref()
            .expect("frame has an id")
            .parse()
            .unwrap()
    }
}

/// What the stream produced next.
#[derive(Debug)]
pub enum SseItem {
    Event(SseEvent),
    Comment(String),
    /// The server ended the response cleanly.
    End,
    /// The connection broke.
    Error(String),
}

/// A minimal SSE client over reqwest: parses events, comments and `retry:` lines.
pub struct SseClient {
    pub status: u16,
    pub content_type: String,
    /// `Retry-After` of a refused stream.
    pub retry_after: Option<String>,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buffer: String,
    pub retry: Option<u64>,
    /// The error body when the status is not 200.
    pub error: Option<Value>,
}

pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

impl SseClient {
    pub async fn connect(
        stack: &Stack,
        query: &str,
        auth: Auth<'_>,
        last_event_id: Option<&str>,
    ) -> SseClient {
        SseClient::connect_at(
            stack,
            "/api/dashboard/followup-stream",
            query,
            auth,
            last_event_id,
        )
        .await
    }

    /// [`SseClient::connect`] to another stream path (the CRM's `/metrics/followup/stream`).
    pub async fn connect_at(
        stack: &Stack,
        path: &str,
        query: &str,
        auth: Auth<'_>,
        last_event_id: Option<&str>,
    ) -> SseClient {
        SseClient::connect_url(&stack.url(&format!("{path}{query}")), auth, last_event_id).await
    }

    /// [`SseClient::connect`] to a full URL (a gateway running as a process of its own).
    pub async fn connect_url(url: &str, auth: Auth<'_>, last_event_id: Option<&str>) -> SseClient {
        let client = reqwest::Client::builder().build().unwrap();
        let mut request = client.get(url).header("Accept", "text/event-stream");
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Cookie(cookie) => request = request.header("Cookie", cookie),
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("stream request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status != 200 {
            let text = response.text().await.unwrap_or_default();
            return SseClient {
                status,
                content_type,
                retry_after,
                body: None,
                buffer: String::new(),
                retry: None,
                error: serde_json::from_str(&text).ok(),
            };
        }
        SseClient {
            status,
            content_type,
            retry_after,
            body: Some(response.bytes_stream().boxed()),
            buffer: String::new(),
            retry: None,
            error: None,
        }
    }

    /// The next event or comment, or `None` if nothing came within `wait`.
    pub async fn next_item(&mut self, wait: Duration) -> Option<SseItem> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(item) = self.parse_one() {
                return Some(item);
            }
            let body = self.body.as_mut()?;
            let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.body = None;
                    return Some(SseItem::End);
                }
                Ok(Some(Err(err))) => {
                    self.body = None;
                    return Some(SseItem::Error(err.to_string()));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `metrics` event within `wait`, skipping comments.
    pub async fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await? {
                SseItem::Event(event) => return Some(event),
                SseItem::Comment(_) => continue,
                SseItem::End | SseItem::Error(_) => return None,
            }
        }
    }

    fn parse_one(&mut self) -> Option<SseItem> {
        let end = self.buffer.find("\n\n")?;
        let block: String = self.buffer.drain(..end + 2).collect();
        let mut event = SseEvent {
            id: None,
            event: None,
            data: String::new(),
        };
        let mut comment = None;
        let mut has_field = false;
        for line in block.lines() {
            if let Some(text) = line.strip_prefix(':') {
                comment = Some(text.trim().to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.event = Some(value.to_owned()),
                "data" => {
                    if has_field && !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_field = true;
                }
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
        if has_field {
            Some(SseItem::Event(event))
        } else if let Some(comment) = comment {
            Some(SseItem::Comment(comment))
        } else {
            // A block with only `retry:`: read on.
            self.parse_one()
        }
    }
}
