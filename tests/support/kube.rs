//! A stand-in Kubernetes API server for `ferry discover`'s live-cluster tests: no real API
//! server can be installed on these machines, so this one speaks what discovery uses and
//! nothing more, the way the fault proxy stands in for faults. It serves the list endpoints
//! (`/api/v1/namespaces`, `/api/v1[/namespaces/NS]/{pods,replicationcontrollers}`,
//! `/apis/{apps,batch}/v1[/namespaces/NS]/…`) over TLS with the test server certificate,
//! pages them by `limit`/`continue` (at most [`KubeApi::MAX_PAGE`] items a page, however
//! large the `limit`, so a handful of objects takes several pages), drops each item's `kind`
//! as the real server does, and authenticates as an API server does:
//! - [`ADMIN_TOKEN`] or a client certificate the test CA signed ([`client_cert`]) may list
//!   everything, cluster-wide too;
//! - [`LIMITED_TOKEN`] may list namespaces and each namespace's objects, but not across
//!   namespaces, and gets 403 in the namespace [`KubeApi::start`] was told to forbid;
//! - anything else gets 401.
//!
//! Every request is recorded ([`KubeApi::requests`]) so tests can count pages. Kubeconfig
//! files for it come from [`KubeApi::kubeconfig`].

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::certs::Pki;
use crate::net;

/// A bearer token that may list everything.
pub const ADMIN_TOKEN: &str = "kube-admin-token";
/// A bearer token that may not list across namespaces, nor in the forbidden namespace.
pub const LIMITED_TOKEN: &str = "kube-limited-token";

/// The resources served: plural → kind, and the API group path they live under.
const RESOURCES: [(&str, &str, &str); 8] = [
    ("api/v1", "pods", "Pod"),
    ("api/v1", "replicationcontrollers", "ReplicationController"),
    ("apis/apps/v1", "deployments", "Deployment"),
    ("apis/apps/v1", "statefulsets", "StatefulSet"),
    ("apis/apps/v1", "daemonsets", "DaemonSet"),
    ("apis/apps/v1", "replicasets", "ReplicaSet"),
    ("apis/batch/v1", "jobs", "Job"),
    ("apis/batch/v1", "cronjobs", "CronJob"),
];

/// Who a request came as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Limited,
    ClientCert,
    Nobody,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct KubeRequest {
    pub path: String,
    pub query: String,
    pub caller: Caller,
    pub status: u16,
}

struct ApiState {
    objects: Vec<Value>,
    namespaces: Vec<String>,
    forbidden: String,
    requests: Mutex<Vec<KubeRequest>>,
}

/// Whether the TLS client presented a certificate the test CA signed.
#[derive(Clone, Copy)]
struct PeerCert(bool);

/// A running stand-in API server; dropping it stops it.
pub struct KubeApi {
    state: Arc<ApiState>,
    addr: std::net::SocketAddr,
    task: JoinHandle<()>,
}

/// A client certificate and key (PEM files) the test CA signed, for `CN=ferry-test-user`.
pub fn client_cert() -> &'static (PathBuf, PathBuf) {
    static CERT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CERT.get_or_init(|| {
        let pki = Pki::get();
        let dir = tempfile::Builder::new()
            .prefix("ferry-kube-client-")
            .tempdir()
            .expect("temp dir")
            .keep();
        crate::remove_at_exit(dir.clone());
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = clientAuth\n",
        )
        .expect("writing client.ext");
        let ca_cert = pki.ca_cert.display().to_string();
        let ca_key = pki.ca_key.display().to_string();
        let serial = format!("0x{:016x}", crate::net::random_u64() >> 1);
        let steps: [&[&str]; 2] = [
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=ferry-test-user",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                &serial,
                "-days",
                "3650",
                "-extfile",
                "client.ext",
                "-out",
                "client.crt",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("running openssl");
            assert!(
                out.status.success(),
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (dir.join("client.crt"), dir.join("client.key"))
    })
}

/// The test server certificate, asking for (not requiring) a client certificate the test
/// CA signed.
fn acceptor() -> TlsAcceptor {
    static ACCEPTOR: OnceLock<TlsAcceptor> = OnceLock::new();
    ACCEPTOR
        .get_or_init(|| {
            let pki = Pki::get();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&pki.ca_cert).expect("reading CA") {
                roots.add(cert.expect("parsing CA")).expect("adding CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .allow_unauthenticated()
            .build()
            .expect("client verifier");
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(&pki.server_cert)
                    .expect("reading server cert")
                    .collect::<Result<_, _>>()
                    .expect("parsing server cert");
            let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("reading server key");
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("rustls protocol versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .expect("rustls server config");
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsAcceptor::from(Arc::new(config))
        })
        .clone()
}

impl KubeApi {
    /// Items per page at most, whatever `limit` asks.
    pub const MAX_PAGE: usize = 2;

    /// Serves `objects` (each with its `kind` and `metadata.namespace`); the namespaces are
    /// theirs plus `extra_namespaces`; [`LIMITED_TOKEN`] is refused in `forbidden`.
    pub fn start(objects: Vec<Value>, extra_namespaces: &[&str], forbidden: &str) -> KubeApi {
        let mut namespaces: Vec<String> = objects
            .iter()
            .filter_map(|o| o.pointer("/metadata/namespace").and_then(Value::as_str))
            .map(str::to_string)
            .chain(extra_namespaces.iter().map(|n| n.to_string()))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        let state = Arc::new(ApiState {
            objects,
            namespaces,
            forbidden: forbidden.to_string(),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let (listener, addr) = net::bind_loopback();
        let acceptor = acceptor();
        let task = net::bg().spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
                conns.spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    let Ok(Ok(tls)) = handshake.await else {
                        return;
                    };
                    let peer = PeerCert(
                        tls.get_ref()
                            .1
                            .peer_certificates()
                            .is_some_and(|c| !c.is_empty()),
                    );
                    let svc = TowerToHyperService::new(router.layer(Extension(peer)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        KubeApi { state, addr, task }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// A kubeconfig whose one context (`test`) reaches this server trusting the test CA,
    /// as the user described by `user_yaml` (the body of `users[0].user`, indented 4).
    pub fn kubeconfig(&self, user_yaml: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test-cluster\n  cluster:\n    server: {}\n    certificate-authority: {:?}\n\
             contexts:\n- name: test\n  context:\n    cluster: test-cluster\n    user: test-user\n\
             users:\n- name: test-user\n  user:\n{user_yaml}",
            self.server(),
            Pki::get().ca_cert.display().to_string(),
        )
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<Arc<ApiState>>,
    Extension(peer): Extension<PeerCert>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let caller = match token {
        Some(ADMIN_TOKEN) => Caller::Admin,
        Some(LIMITED_TOKEN) => Caller::Limited,
        _ if peer.0 => Caller::ClientCert,
        _ => Caller::Nobody,
    };
    let (status, body) = answer(&state, caller, &uri);
    state.requests.lock().unwrap().push(KubeRequest {
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        caller,
        status: status.as_u16(),
    });
    (status, Json(body)).into_response()
}

fn status(code: StatusCode, message: &str) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "code": code.as_u16()});
    (code, body)
}

fn answer(state: &ApiState, caller: Caller, uri: &Uri) -> (StatusCode, Value) {
    if caller == Caller::Nobody {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path = uri.path().trim_start_matches('/');
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .clamp(1, KubeApi::MAX_PAGE);
    let offset = match param("continue") {
        None => 0,
        Some(token) => match token.strip_prefix("next-").and_then(|o| o.parse().ok()) {
            Some(offset) => offset,
            None => return status(StatusCode::BAD_REQUEST, "bad continue token"),
        },
    };
    let (kind, items): (&str, Vec<Value>) = if path == "api/v1/namespaces" {
        let items = state
            .namespaces
            .iter()
            .map(|n| json!({"metadata": {"name": n}}))
            .collect();
        ("Namespace", items)
    } else {
        let Some((namespace, resource_kind)) = route(path) else {
            return status(
                StatusCode::NOT_FOUND,
                "the server could not find the requested resource",
            );
        };
        match (&namespace, caller) {
            (None, Caller::Limited) => {
                return status(StatusCode::FORBIDDEN, "cannot list at the cluster scope")
            }
            (Some(ns), Caller::Limited) if *ns == state.forbidden => {
                return status(
                    StatusCode::FORBIDDEN,
                    &format!("cannot list in the namespace {ns:?}"),
                )
            }
            _ => {}
        }
        let items = state
            .objects
            .iter()
            .filter(|o| o["kind"] == resource_kind)
            .filter(|o| {
                namespace.is_none()
                    || o.pointer("/metadata/namespace").and_then(Value::as_str) == namespace
            })
            .map(|o| {
                let mut item = o.clone();
                if let Some(fields) = item.as_object_mut() {
                    fields.remove("kind");
                    fields.remove("apiVersion");
                }
                item
            })
            .collect();
        (resource_kind, items)
    };
    let page: Vec<Value> = items.iter().skip(offset).take(limit).cloned().collect();
    let mut metadata = json!({"resourceVersion": "1"});
    if offset + page.len() < items.len() {
        metadata["continue"] = json!(format!("next-{}", offset + page.len()));
    }
    let body = json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": metadata, "items": page});
    (StatusCode::OK, body)
}

/// `(namespace, kind)` of a list path, or `None` for a path not served.
fn route(path: &str) -> Option<(Option<&str>, &'static str)> {
    RESOURCES.iter().find_map(|(group, plural, kind)| {
        let rest = path.strip_prefix(group)?.strip_prefix('/')?;
        if rest == *plural {
            return Some((None, *kind));
        }
        let namespace = rest
            .strip_prefix("namespaces/")?
            .strip_suffix(plural)?
            .strip_suffix('/')?;
        (!namespace.is_empty() && !namespace.contains('/')).then_some((Some(namespace), *kind))
    })
}
