//! The cluster secret: what a scheduler, its executors and its clients share so
//! that only they can talk to one another.
//!
//! ```text
//!   EMBER_CLUSTER_TOKEN / --cluster-token-file
//!     └─ PBKDF2 ─> Ed25519 key ─> the cluster's CA (self-signed) + one member certificate
//!          every server: TLS, a client certificate from that CA required
//!          every client: TLS, presents the member certificate, trusts only that CA
//! ```
//!
//! The token itself never crosses the wire. Ballista 55 lets ember add headers
//! only on a client's calls to the scheduler; executors' calls to the scheduler,
//! the scheduler's calls to executors and shuffle fetches take only an endpoint
//! override. A TLS client certificate fits all of them, so holding the token is
//! proved the same way on every channel: whoever cannot derive the CA's key
//! cannot finish a handshake, and no call of theirs reaches a handler.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::SessionConfigExt;
use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::SessionConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tonic::transport::{
    Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig, Uri,
};

/// The environment variable that holds the cluster secret.
pub const CLUSTER_TOKEN_ENV: &str = "EMBER_CLUSTER_TOKEN";

/// The shortest secret accepted: the CA certificate every handshake shows is
/// derived from it, so a short one could be guessed offline.
const MIN_TOKEN_CHARS: usize = 16;

/// The name every member's certificate carries and every client checks. Members
/// are told apart by holding the secret, not by host name: executors advertise
/// whatever address they are reached at, and a certificate per address would
/// need a CA on every machine anyway.
const MEMBER_NAME: &str = "ember-cluster";

/// PBKDF2 rounds: slows a guess at a weak token; derived once per process.
const KDF_ROUNDS: std::num::NonZeroU32 = std::num::NonZeroU32::new(100_000).unwrap();

/// How long a secured channel waits to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The TLS material every member of one cluster derives from its secret.
pub struct ClusterSecret {
    ca: Certificate,
    member: Identity,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret in `token` (surrounding whitespace ignored).
    pub fn from_token(token: &str) -> Result<Self> {
        Self::derive(token).map_err(DataFusionError::Configuration)
    }

    /// The secret in the first non-empty line of `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            DataFusionError::Configuration(format!(
                "cannot read the cluster secret from {}: {e}",
                path.display()
            ))
        })?;
        let token = text.lines().map(str::trim).find(|l| !l.is_empty());
        Self::derive(token.unwrap_or_default())
            .map_err(|e| DataFusionError::Configuration(format!("{}: {e}", path.display())))
    }

    /// The secret a process was given: `file` when set, else
    /// `EMBER_CLUSTER_TOKEN`, else none (the cluster's channels are open).
    pub fn resolve(file: Option<&Path>) -> Result<Option<Arc<Self>>> {
        if let Some(path) = file {
            return Self::from_file(path).map(|s| Some(Arc::new(s)));
        }
        match std::env::var(CLUSTER_TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => Self::derive(&token)
                .map(|s| Some(Arc::new(s)))
                .map_err(|e| DataFusionError::Configuration(format!("{CLUSTER_TOKEN_ENV}: {e}"))),
            _ => Ok(None),
        }
    }

    fn derive(token: &str) -> std::result::Result<Self, String> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the cluster secret is too short: it needs {MIN_TOKEN_CHARS} characters at least \
                 (make one with `openssl rand -hex 32`)"
            ));
        }
        let tls = |e: rcgen::Error| format!("cannot make the cluster's TLS certificates: {e}");
        let ca_key = derived_key(token, b"ember cluster CA v1").map_err(tls)?;
        let member_key = derived_key(token, b"ember cluster member v1").map_err(tls)?;

        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ember cluster CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls)?;

        let mut member_params =
            CertificateParams::new(vec![MEMBER_NAME.to_string()]).map_err(tls)?;
        member_params
            .distinguished_name
            .push(DnType::CommonName, MEMBER_NAME);
        let issuer = Issuer::new(ca_params, ca_key);
        let member_cert = member_params.signed_by(&member_key, &issuer).map_err(tls)?;
        Ok(Self {
            ca: Certificate::from_pem(ca_cert.pem()),
            member: Identity::from_pem(member_cert.pem(), member_key.serialize_pem()),
        })
    }

    /// `server` serving TLS to members only when the cluster holds `secret`;
    /// as it is without one.
    pub fn secure_server(
        secret: Option<&Arc<Self>>,
        server: Server,
    ) -> std::result::Result<Server, tonic::transport::Error> {
        match secret {
            Some(secret) => server.tls_config(secret.server_tls()),
            None => Ok(server),
        }
    }

    /// TLS for a server of the cluster: only members' certificates get in.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.member.clone())
            .client_ca_root(self.ca.clone())
    }

    /// TLS for a client of the cluster: trusts members only, and is one.
    pub fn client_tls(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.member.clone())
            .domain_name(MEMBER_NAME)
    }

    /// `endpoint` over TLS as a member. Ballista dials executors with `https`
    /// when told to use TLS, but the scheduler always with `http`; tonic speaks
    /// TLS only to `https` URIs, so those are rebuilt with ember's settings.
    pub fn secure(&self, endpoint: Endpoint) -> std::result::Result<Endpoint, BoxError> {
        let endpoint = if endpoint.uri().scheme_str() == Some("https") {
            endpoint
        } else {
            let uri = endpoint.uri();
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let https: Uri = format!("https://{authority}{path}").parse()?;
            Endpoint::from(https)
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .tcp_keepalive(Some(Duration::from_secs(60)))
                .http2_keep_alive_interval(Duration::from_secs(60))
                .keep_alive_while_idle(true)
        };
        Ok(endpoint.tls_config(self.client_tls())?)
    }

    /// `config` with every Ballista channel it opens (scheduler, shuffle and
    /// result fetches) over TLS as a member of the cluster that holds `secret`,
    /// and the secret for ember's own channels (training rounds) to find;
    /// `config` as it is without one.
    pub fn secure_config(secret: Option<&Arc<Self>>, config: SessionConfig) -> SessionConfig {
        let Some(secret) = secret else {
            return config;
        };
        secret.secured(config)
    }

    fn secured(self: &Arc<Self>, config: SessionConfig) -> SessionConfig {
        config
            .with_ballista_use_tls(true)
            .with_ballista_override_create_grpc_client_endpoint(self.endpoint_override())
            .with_extension(self.clone())
    }

    /// The secret a session carries (see [`Self::secure_config`]).
    pub fn of(config: &SessionConfig) -> Option<Arc<Self>> {
        config.get_extension::<Self>()
    }

    /// The override Ballista's scheduler and executor configs take.
    pub fn endpoint_override(self: &Arc<Self>) -> ballista_core::extension::EndpointOverrideFn {
        let secret = self.clone();
        Arc::new(move |endpoint| secret.secure(endpoint))
    }
}

/// An endpoint for `address` (`HOST:PORT`) of a cluster: plain, or over TLS
/// as a member when `secret` is given.
pub fn cluster_endpoint(
    address: &str,
    secret: Option<&ClusterSecret>,
) -> std::result::Result<Endpoint, BoxError> {
    let endpoint =
        Endpoint::from_shared(format!("http://{address}"))?.connect_timeout(CONNECT_TIMEOUT);
    match secret {
        Some(secret) => secret.secure(endpoint),
        None => Ok(endpoint),
    }
}

/// Whether a call reached the service's handler: an answer, or a status the
/// handler made. A status made by the transport (a refused handshake, a reset
/// connection) carries its cause; a handler's does not.
pub fn reached_handler<T>(result: &std::result::Result<T, tonic::Status>) -> bool {
    match result {
        Ok(_) => true,
        Err(status) => std::error::Error::source(status).is_none(),
    }
}

/// Makes one call to the scheduler at `host:port`, so that a client whose
/// secret does not match the cluster's fails at once with a line that says so,
/// instead of a transport error at its first query.
pub(crate) async fn check_accepted(
    host: &str,
    port: u16,
    secret: Option<&ClusterSecret>,
) -> Result<()> {
    use ballista_core::serde::protobuf::GetJobStatusParams;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;

    let refused = |why: String| {
        let hint = match secret {
            Some(_) => {
                "this client has a cluster secret: the cluster was started without one, or with another"
            }
            None => {
                "the cluster may require its secret: set EMBER_CLUSTER_TOKEN or pass --cluster-token-file"
            }
        };
        DataFusionError::Execution(format!(
            "the scheduler at df://{host}:{port} refused this client ({hint}): {why}"
        ))
    };
    let endpoint =
        cluster_endpoint(&format!("{host}:{port}"), secret).map_err(|e| refused(e.to_string()))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| refused(source_chain(&e)))?;
    let probe = GetJobStatusParams {
        job_id: "ember-connection-check".into(),
    };
    let answer = SchedulerGrpcClient::new(channel)
        .get_job_status(probe)
        .await;
    if reached_handler(&answer) {
        return Ok(());
    }
    // A status shows its cause's debug form; its message and causes read better.
    let why = answer
        .err()
        .map(|status| match std::error::Error::source(&status) {
            Some(cause) => format!("{}: {}", status.message(), source_chain(cause)),
            None => status.message().to_string(),
        })
        .unwrap_or_default();
    Err(refused(why))
}

/// An error and its causes on one line (tonic's transport errors say little
/// at the top).
fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// An Ed25519 key derived from `token` for one purpose.
fn derived_key(token: &str, purpose: &[u8]) -> std::result::Result<KeyPair, rcgen::Error> {
    let mut seed = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        KDF_ROUNDS,
        purpose,
        token.as_bytes(),
        &mut seed,
    );
    // PKCS#8 v1 for Ed25519 is a fixed prefix and the 32-byte seed (RFC 8410).
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&seed);
    KeyPair::try_from(pkcs8.as_slice())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
