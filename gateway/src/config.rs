//! The gateway's configuration: one typed struct, from flags or the environment, validated at
//! start-up so a missing or doubled JWT setting stops the process with a clear message.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use followup_infra::CommonArgs;

/// `followup-gateway`: the cockpit's follow-up figures as JSON, pushed SSE and a live page.
#[derive(Debug, Parser)]
#[command(name = "followup-gateway", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What the process does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the SSE stream, the cockpit page and /metrics until SIGINT/SIGTERM.
    Serve(Box<GatewayConfig>),
    /// Print an HS256 development token signed with JWT_SECRET.
    DevToken(DevTokenArgs),
}

/// Settings of `serve`.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// `DATABASE_URL` (the projection lives there), `NATS_URL` (the projector's change notices
    /// arrive over core NATS) and `FOLLOWUP_TZ` (must equal the projector's), read the same way
    /// by every binary.
    #[command(flatten)]
    pub common: CommonArgs,
    // HTTP_ADDR stays per binary (not in CommonArgs): each binary has its own default port
    // (producer 9101, projector 9102, gateway 8080) so all three run side by side on one host
    // without settings.
    /// Listener of the API, the page and the operational endpoints.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub jwt: JwtConfig,
    /// Mark the session cookie `Secure` (set it when the gateway is reached over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Postgres connections in the gateway's pool.
    #[arg(long, env = "GATEWAY_DB_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=256))]
    pub db_connections: u32,
    /// A frame is pushed to every stream client at least this often (ms), changed or not.
    #[arg(long, env = "SSE_PERIOD_MS", default_value_t = 4000,
          value_parser = clap::value_parser!(u64).range(100..=5000))]
    pub sse_period_ms: u64,
    /// Heartbeat comment interval on idle streams (ms).
    #[arg(long, env = "SSE_HEARTBEAT_MS", default_value_t = 15000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub sse_heartbeat_ms: u64,
    /// Coalescing window: a scope's figures are reloaded at most once per window (ms).
    #[arg(long, env = "SSE_COALESCE_MS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=5000))]
    pub sse_coalesce_ms: u64,
    /// TCP_USER_TIMEOUT of accepted connections (ms): a peer that acknowledges nothing (or keeps
    /// its receive window shut) for this long has its connection closed by the kernel.
    #[arg(long, env = "TCP_USER_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub tcp_user_timeout_ms: u64,
    /// Frames buffered per stream client; a client that falls this far behind is dropped.
    #[arg(long, env = "SSE_CLIENT_BUFFER", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub sse_client_buffer: u64,
    /// Key the producer signs unsubscribe links with (same value); without it `/unsubscribe`
    /// answers 503.
    #[arg(long, env = "UNSUBSCRIBE_SECRET", hide_env_values = true)]
    pub unsubscribe_secret: Option<String>,
    /// Separate listener for `/metrics` (then no longer served on HTTP_ADDR); unset: `/metrics`
    /// stays on HTTP_ADDR.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Comma-separated origins (`https://crm.example.com`) allowed to call the API and the
    /// stream cross-origin, with credentials; empty: no CORS headers at all.
    #[arg(long, env = "CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Open SSE streams per gateway process; beyond it a new stream gets 503 with Retry-After.
    #[arg(long, env = "SSE_MAX_CONNECTIONS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub sse_max_connections: u64,
    /// Open SSE streams per user; beyond it a new stream gets 429 with Retry-After.
    #[arg(long, env = "SSE_MAX_CONNECTIONS_PER_USER", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub sse_max_connections_per_user: u64,
    /// A connection that has not sent complete request headers within this time (ms) is closed.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub http_header_timeout_ms: u64,
}

/// How access tokens are checked.
#[derive(Debug, Clone, Args)]
pub struct JwtConfig {
    /// HS256 shared secret (development). Exactly one of JWT_SECRET and JWT_JWKS.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// RS256 key set of the identity provider: a file path or an http(s) URL.
    #[arg(long, env = "JWT_JWKS")]
    pub jwt_jwks: Option<String>,
    /// Claim holding the user id that matches `leads.owner_user_id`: the CRM's owner ids are
    /// login names, the identity provider's `preferred_username` (its `sub` is a UUID).
    #[arg(long, env = "JWT_USER_CLAIM", default_value = "preferred_username")]
    pub jwt_user_claim: String,
    /// Required `iss`, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud`, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// `dev-token` arguments.
#[derive(Debug, Clone, Args)]
pub struct DevTokenArgs {
    /// HS256 secret the gateway checks tokens with.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// User id (written to JWT_USER_CLAIM).
    #[arg(long, default_value = "u1")]
    pub sub: String,
    /// Role: admin, manager or sales (repeatable).
    #[arg(long = "role", default_values_t = vec!["admin".to_owned()])]
    pub roles: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    pub ttl_secs: u64,
    /// Claim holding the user id.
    #[arg(long, env = "JWT_USER_CLAIM", default_value = "preferred_username")]
    pub jwt_user_claim: String,
    /// `iss` to put in the token.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// `aud` to put in the token.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Print the cockpit URL with the token in its fragment instead of the bare token,
    /// e.g. `--url http://localhost:8080`.
    #[arg(long)]
    pub url: Option<String>,
}

/// Why a configuration is rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("set exactly one of JWT_SECRET (HS256) and JWT_JWKS (RS256); neither is set")]
    NoJwtKey,
    #[error("set exactly one of JWT_SECRET (HS256) and JWT_JWKS (RS256); both are set")]
    BothJwtKeys,
    #[error("JWT_SECRET must be at least {min} bytes long")]
    ShortSecret { min: usize },
    #[error("JWT_USER_CLAIM must not be empty")]
    EmptyUserClaim,
    #[error("{name} must not be blank when set")]
    Blank { name: &'static str },
    #[error("CORS_ORIGINS entry {entry:?}: {reason}")]
    CorsOrigin { entry: String, reason: &'static str },
}

/// Parses `CORS_ORIGINS`: comma-separated exact origins, `scheme://host[:port]` with an `http`
/// or `https` scheme, no path, no user info, no wildcard (credentials are allowed, so every
/// origin must be named). Returned lower-cased, as browsers send them.
pub fn parse_cors_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let fail = |reason| ConfigError::CorsOrigin {
            entry: entry.to_owned(),
            reason,
        };
        if entry.contains('*') {
            return Err(fail(
                "wildcards are not allowed (credentials are sent); list each origin",
            ));
        }
        let lower = entry.to_ascii_lowercase();
        let (scheme, rest) = lower
            .split_once("://")
            .ok_or_else(|| fail("expected scheme://host[:port]"))?;
        if scheme != "http" && scheme != "https" {
            return Err(fail("the scheme must be http or https"));
        }
        if rest.is_empty() {
            return Err(fail("the host is missing"));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(fail(
                "an origin has no path, query or fragment (not even a trailing /)",
            ));
        }
        if rest.contains('@') {
            return Err(fail("an origin has no user info"));
        }
        if !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(fail("the host contains characters an origin cannot have"));
        }
        if let Some((_, port)) = rest.rsplit_once(':').filter(|_| !rest.ends_with(']')) {
            match port.parse::<u16>() {
                Ok(p) if (scheme == "http" && p == 80) || (scheme == "https" && p == 443) => {
                    return Err(fail(
                        "browsers omit the scheme's default port in Origin; drop it",
                    ));
                }
                Ok(_) => {}
                Err(_) => return Err(fail("the port must be a number")),
            }
        }
        if !origins.contains(&lower) {
            origins.push(lower);
        }
    }
    Ok(origins)
}

/// Shortest accepted HS256 secret.
pub const MIN_SECRET_BYTES: usize = 16;

/// Where the RS256 keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

/// The key material, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Secret(String),
    Jwks(JwksSource),
}

impl JwtConfig {
    /// Checks the settings and says which kind of key to use.
    pub fn validate(&self) -> Result<KeySource, ConfigError> {
        if self.jwt_user_claim.trim().is_empty() {
            return Err(ConfigError::EmptyUserClaim);
        }
        for (name, value) in [
            ("JWT_ISSUER", &self.jwt_issuer),
            ("JWT_AUDIENCE", &self.jwt_audience),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ConfigError::Blank { name });
            }
        }
        let secret = self.jwt_secret.as_deref().filter(|s| !s.is_empty());
        let jwks = self.jwt_jwks.as_deref().filter(|s| !s.trim().is_empty());
        match (secret, jwks) {
            (None, None) => Err(ConfigError::NoJwtKey),
            (Some(_), Some(_)) => Err(ConfigError::BothJwtKeys),
            (Some(secret), None) if secret.len() < MIN_SECRET_BYTES => {
                Err(ConfigError::ShortSecret {
                    min: MIN_SECRET_BYTES,
                })
            }
            (Some(secret), None) => Ok(KeySource::Secret(secret.to_owned())),
            (None, Some(jwks)) => {
                let jwks = jwks.trim();
                if jwks.starts_with("http://") || jwks.starts_with("https://") {
                    Ok(KeySource::Jwks(JwksSource::Url(jwks.to_owned())))
                } else {
                    Ok(KeySource::Jwks(JwksSource::File(jwks.into())))
                }
            }
        }
    }
}

impl GatewayConfig {
    /// A configuration with defaults for everything but the database, NATS and the JWT secret;
    /// what the tests and the benchmark start from.
    pub fn for_tests(database_url: &str, nats_url: &str, jwt_secret: &str) -> GatewayConfig {
        GatewayConfig {
            common: CommonArgs::new(database_url, nats_url),
            http_addr: "127.0.0.1:0".parse().expect("literal address"),
            jwt: JwtConfig {
                jwt_secret: Some(jwt_secret.to_owned()),
                jwt_jwks: None,
                jwt_user_claim: "preferred_username".to_owned(),
                jwt_issuer: None,
                jwt_audience: None,
            },
            cookie_secure: false,
            db_connections: 16,
            sse_period_ms: 4000,
            sse_heartbeat_ms: 15000,
            sse_coalesce_ms: 20,
            sse_client_buffer: 16,
            unsubscribe_secret: None,
            tcp_user_timeout_ms: 30_000,
            metrics_addr: None,
            cors_origins: String::new(),
            sse_max_connections: 20_000,
            sse_max_connections_per_user: 20,
            http_header_timeout_ms: 10_000,
        }
    }

    pub fn sse_period(&self) -> Duration {
        Duration::from_millis(self.sse_period_ms)
    }

    pub fn sse_heartbeat(&self) -> Duration {
        Duration::from_millis(self.sse_heartbeat_ms)
    }

    pub fn tcp_user_timeout(&self) -> Duration {
        Duration::from_millis(self.tcp_user_timeout_ms)
    }

    pub fn sse_coalesce(&self) -> Duration {
        Duration::from_millis(self.sse_coalesce_ms)
    }

    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: Option<&str>, jwks: Option<&str>) -> JwtConfig {
        JwtConfig {
            jwt_secret: secret.map(str::to_owned),
            jwt_jwks: jwks.map(str::to_owned),
            jwt_user_claim: "sub".to_owned(),
            jwt_issuer: None,
            jwt_audience: None,
        }
    }

    #[test]
    fn exactly_one_key_source() {
        assert!(matches!(
            jwt(None, None).validate(),
            Err(ConfigError::NoJwtKey)
        ));
        assert!(matches!(
            jwt(Some("0123456789abcdef"), Some("/k.json")).validate(),
            Err(ConfigError::BothJwtKeys)
        ));
        assert!(matches!(
            jwt(Some("short"), None).validate(),
            Err(ConfigError::ShortSecret { .. })
        ));
        assert_eq!(
            jwt(Some("0123456789abcdef"), None).validate().unwrap(),
            KeySource::Secret("0123456789abcdef".into())
        );
        assert_eq!(
            jwt(None, Some("https://idp/certs")).validate().unwrap(),
            KeySource::Jwks(JwksSource::Url("https://idp/certs".into()))
        );
        assert_eq!(
            jwt(None, Some("/etc/jwks.json")).validate().unwrap(),
            KeySource::Jwks(JwksSource::File("/etc/jwks.json".into()))
        );
    }

    #[test]
    fn cors_origins_are_exact_origins() {
        assert_eq!(parse_cors_origins("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_cors_origins(" https://CRM.example.com, http://localhost:5173 ,").unwrap(),
            vec!["https://crm.example.com", "http://localhost:5173"]
        );
        assert_eq!(
            parse_cors_origins("http://[::1]:8080").unwrap(),
            vec!["http://[::1]:8080"]
        );
        for bad in [
            "*",
            "https://*.example.com",
            "crm.example.com",
            "ftp://crm.example.com",
            "https://crm.example.com/",
            "https://crm.example.com/api",
            "https://user@crm.example.com",
            "https://crm.example.com:443",
            "https://crm.example.com:x",
            "https://",
        ] {
            let err = parse_cors_origins(bad).expect_err(bad);
            assert!(err.to_string().contains("CORS_ORIGINS"), "{err}");
        }
    }

    #[test]
    fn cli_parses_serve_from_flags() {
        let cli = Cli::try_parse_from([
            "followup-gateway",
            "serve",
            "--database-url",
            "postgres://x/y",
            "--jwt-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        let Command::Serve(config) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.common.followup_tz, chrono_tz::Europe::Berlin);
        assert_eq!(config.jwt.jwt_user_claim, "preferred_username");
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.cors_origins, "");
        assert_eq!(config.sse_max_connections, 20_000);
        assert_eq!(config.sse_max_connections_per_user, 20);
        assert_eq!(config.http_header_timeout_ms, 10_000);
    }
}
