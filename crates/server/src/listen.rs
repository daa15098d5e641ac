//! The listener: plain HTTP or TLS (rustls, optionally asking devices for their client
//! certificate), at most [`Limits::max_connections`] connections at once, each closed when a
//! request head does not arrive within [`Limits::header_timeout`] (idle ones too).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::Limits;
use crate::identity::TlsPeer;

/// The server's TLS identity, and the CAs whose client certificates it asks devices for.
pub struct TlsSettings {
    config: Arc<rustls::ServerConfig>,
}

impl TlsSettings {
    /// From the certificate chain and key (PEM). With `client_cas`, devices are asked for a
    /// client certificate from them (not required: a device may prove itself by
    /// `Mdm-Signature` instead, and the admin API has its key).
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        client_cas: &[CertificateDer<'static>],
    ) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--tls-cert is not a PEM certificate chain: {e}"))?;
        if chain.is_empty() {
            return Err("--tls-cert holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("--tls-key is not a PEM private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for ca in client_cas {
                roots
                    .add(ca.clone())
                    .map_err(|e| format!("a device CA cannot be used for TLS: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("device CAs for TLS: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("--tls-cert and --tls-key do not go together: {e}"))?;
        // HTTP/1.1 only: its header timeout also closes idle connections, where HTTP/2 keeps
        // an idle client open as long as it answers pings. Devices and consoles speak 1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Connections the kernel holds for us while every slot is taken (Linux caps it at
/// `net.core.somaxconn`, 4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` with a queue of [`LISTEN_BACKLOG`]: tokio's default of 128 would
/// refuse devices as soon as the slots are full.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsSettings>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.config));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // The header timeout runs from the moment a head is awaited, the connection's first one
    // included: a connection that sends nothing is closed after it, as a slow head is.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: over the cap, connections wait in the
        // kernel's queue rather than take a descriptor.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a reset before accept: wait, do not spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, acceptor, builder) = (app.clone(), acceptor.clone(), builder.clone());
        let watcher = graceful.watcher();
        let handshake_limit = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    let service = with_peer(app, TlsPeer(None));
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|certificate| certificate.clone().into_owned());
                    let service = with_peer(app, TlsPeer(peer));
                    let connection = builder.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(connection).await;
                }
            }
        });
    }
    drop(listener);
    // Requests under way finish (bounded by the request timeout); idle connections close.
    let _ = tokio::time::timeout(limits.request_timeout, graceful.shutdown()).await;
    Ok(())
}

/// The router as a hyper service that puts the connection's TLS peer on every request.
fn with_peer(
    app: Router,
    peer: TlsPeer,
) -> TowerToHyperService<
    impl tower::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone,
> {
    TowerToHyperService::new(app.map_request(move |mut request: axum::http::Request<_>| {
        request.extensions_mut().insert(peer.clone());
        request
    }))
}
