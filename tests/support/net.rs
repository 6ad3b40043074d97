//! Networking plumbing shared by the in-process servers and the helpers:
//! free loopback ports, one background Tokio runtime on which every
//! in-process server and every helper HTTP client runs (so they work from
//! sync tests and from async tests of any flavour, and outlive each test's
//! own runtime), the TLS acceptor for the test server certificate, an HTTP/1
//! serve loop for axum routers, and an HTTP client that trusts the test CA.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::certs::Pki;

/// A loopback port that was free a moment ago (bound to `127.0.0.1:0`, then
/// released). For child processes that must be told their port up front;
/// in-process servers bind port 0 directly instead.
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Random bits without a dependency: std's per-instance random hash keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// The background runtime hosting token issuers, proxies and helper HTTP
/// clients. It lives for the whole test process.
pub(crate) fn bg() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("support-bg")
            .enable_all()
            .build()
            .expect("building the support background runtime")
    })
}

/// Run `fut` on the background runtime and await it from any runtime.
pub(crate) async fn on_bg<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match bg().spawn(fut).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("background task failed: {e}"),
    }
}

/// Run `fut` on the background runtime and block the calling thread until it
/// finishes. Works from plain threads and from inside other runtimes (it
/// blocks that runtime's worker, so keep it short); never call it from a
/// background-runtime task.
pub(crate) fn block_on_bg<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    bg().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("background task panicked")
}

/// A TLS acceptor presenting the test server certificate (HTTP/1.1 only).
pub fn tls_acceptor() -> TlsAcceptor {
    static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();
    ACCEPTOR
        .get_or_init(|| {
            let pki = Pki::get();
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(&pki.server_cert)
                    .expect("reading server cert")
                    .collect::<Result<_, _>>()
                    .expect("parsing server cert");
            let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("reading server key");
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("rustls server config");
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsAcceptor::from(Arc::new(config))
        })
        .clone()
}

/// Bind an ephemeral loopback port on the background runtime.
pub(crate) fn bind_loopback() -> (TcpListener, SocketAddr) {
    block_on_bg(async {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = l.local_addr().expect("local_addr");
        (l, addr)
    })
}

/// Serve `router` over HTTP/1.1 (TLS when `tls`) on the background runtime.
/// Aborting the returned handle stops the accept loop and every connection.
pub(crate) fn serve_router(
    listener: TcpListener,
    tls: bool,
    router: axum::Router,
) -> JoinHandle<()> {
    let acceptor = tls.then(tls_acceptor);
    bg().spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let svc = TowerToHyperService::new(router.clone());
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await
                        else {
                            return;
                        };
                        let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    })
}

/// A `reqwest` client builder that trusts the test CA (in addition to
/// nothing else: the system roots are not loaded), follows no redirects and
/// speaks HTTP/1.1.
pub fn client_builder() -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&Pki::get().ca_pem()).expect("parsing test CA");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(60))
}

/// A client from [`client_builder`]. Tests may use it for raw requests; it
/// can be used from any runtime (connection pooling is off so that no
/// connection task outlives the runtime that made it).
pub fn http_client() -> reqwest::Client {
    client_builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("building reqwest client")
}

/// The client the helpers use on the background runtime (pooled).
pub(crate) fn bg_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| client_builder().build().expect("building reqwest client"))
        .clone()
}

/// A UNIX timestamp as RFC 3339 UTC (`2024-01-02T03:04:05Z`): ferry's own formatter.
pub(crate) use ferry::timestamp::rfc3339;

/// Seconds since the UNIX epoch.
pub(crate) fn now_unix() -> u64 {
    ferry::timestamp::unix_secs(std::time::SystemTime::now())
}
