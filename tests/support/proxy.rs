//! A counting, fault-injecting HTTP/1.1 proxy to put between ferry and a
//! registry. It listens on plain HTTP on a free loopback port and forwards
//! every request (method, path, query, headers including `Authorization`,
//! streamed bodies both ways) to the upstream base URL, which may be HTTPS
//! (trusting the test CA). The only rewriting: absolute `Location` headers
//! pointing at the upstream are pointed back at the proxy; the token realm in
//! `WWW-Authenticate` is left alone (it names the issuer directly).
//!
//! A hook sees each request ([`ProxyRequest`]) and may return a [`Fault`]:
//! answer with a status of its own (503, 429 + `Retry-After`...), reset or
//! close the connection without answering, reset it partway through the
//! request body (an upload cut off), delay, or forward but corrupt, truncate
//! or stall the response body (a stall sends nothing more for up to
//! [`STALL_LIMIT`], until the client gives up), forward to another path, or
//! add response headers. Every request is recorded with its fault and the
//! status answered. Hooks that fault at random draw from a [`SeededRng`], so a
//! seed names a run. The proxy runs on the support background runtime;
//! dropping it stops it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use tokio::task::{JoinHandle, JoinSet};

use crate::net;
use crate::registry::Registry;

/// What the hook sees of a request.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    /// 0-based arrival index.
    pub seq: usize,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query, e.g. `/v2/foo/tags/list?n=10`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
}

impl ProxyRequest {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What to do instead of (or on top of) forwarding a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer this status, headers and body without asking upstream.
    Respond {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// Reset the connection (TCP RST, `SO_LINGER` 0) without answering.
    Reset,
    /// Close the connection (FIN) without answering.
    Close,
    /// Wait, then forward normally.
    Delay(Duration),
    /// Forward, but flip every bit of the first response body byte (same
    /// length, wrong digest).
    CorruptBody,
    /// Forward, but send only the first `n` body bytes (headers keep the
    /// full `Content-Length`), then drop the connection.
    TruncateBody(usize),
    /// Forward, but after the headers and the first `after` body bytes send
    /// nothing more, keeping the connection open: the client's read timeout
    /// must notice. The proxy gives up after [`STALL_LIMIT`] and drops the
    /// connection.
    StallBody {
        /// Body bytes sent before the stall.
        after: usize,
    },
    /// Read the first `after` bytes of the request body (an upload's PUT or
    /// PATCH), then reset the connection (TCP RST) without forwarding or
    /// answering.
    ResetMidUpload {
        /// Request body bytes read before the reset.
        after: usize,
    },
    /// Forward to this path and query instead of the requested one.
    Rewrite(String),
    /// Forward, and add this header to the response.
    AddResponseHeader(String, String),
    /// Forward, and add these headers to the response.
    AddResponseHeaders(Vec<(String, String)>),
}

impl Fault {
    /// Answer `status` with a registry-style JSON error body.
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(
                r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected fault {status}"}}]}}"#
            )
            .into_bytes(),
        }
    }

    /// 503 Service Unavailable.
    pub fn unavailable() -> Fault {
        Fault::status(503)
    }

    /// 429 Too Many Requests with `Retry-After: secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Fault {
        Fault::status(429).with_header("retry-after", &retry_after_secs.to_string())
    }

    /// Add a header to a [`Fault::Respond`] (no-op for other faults).
    pub fn with_header(mut self, name: &str, value: &str) -> Fault {
        if let Fault::Respond { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// A short name for tallies: `"503"`, `"429"` (any [`Fault::Respond`] by
    /// its status), `"reset"`, `"truncate"`, `"stall"`, ...
    pub fn kind(&self) -> String {
        match self {
            Fault::Respond { status, .. } => status.to_string(),
            Fault::Reset => "reset".into(),
            Fault::Close => "close".into(),
            Fault::Delay(_) => "delay".into(),
            Fault::CorruptBody => "corrupt".into(),
            Fault::TruncateBody(_) => "truncate".into(),
            Fault::StallBody { .. } => "stall".into(),
            Fault::ResetMidUpload { .. } => "upload reset".into(),
            Fault::Rewrite(_) => "rewrite".into(),
            Fault::AddResponseHeader(..) | Fault::AddResponseHeaders(_) => "add header".into(),
        }
    }
}

/// How long a [`Fault::StallBody`] holds a connection at most, so that a
/// client without a read timeout cannot hang a test forever.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// A small deterministic generator (SplitMix64, as [`crate::layer`] uses)
/// for hooks that fault at random: the same seed draws the same sequence.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(crate::seed::layer_state(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        crate::seed::next_layer_word(&mut self.0)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// `true` with probability `p` (0.0–1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// A request the proxy saw.
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The fault the hook chose, if any.
    pub fault: Option<Fault>,
    /// The status answered (upstream's or the fault's); `None` if the
    /// connection was reset/closed or upstream failed before answering.
    pub status: Option<u16>,
}

/// A request hook: `Some(fault)` to interfere, `None` to forward.
pub type Hook = Arc<dyn Fn(&ProxyRequest) -> Option<Fault> + Send + Sync>;

/// A hook giving `fault` to the first `n` requests that `matcher` accepts
/// (counted per hook), and forwarding everything else.
pub fn fail_first(
    n: usize,
    matcher: impl Fn(&ProxyRequest) -> bool + Send + Sync + 'static,
    fault: Fault,
) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync + 'static {
    let hits = AtomicUsize::new(0);
    move |req| (matcher(req) && hits.fetch_add(1, Ordering::SeqCst) < n).then(|| fault.clone())
}

/// A matcher: `method` (case-insensitive; `"*"` for any) and a path
/// containing `path_substring`.
pub fn matching(
    method: &str,
    path_substring: &str,
) -> impl Fn(&ProxyRequest) -> bool + Send + Sync + 'static {
    let (method, sub) = (method.to_owned(), path_substring.to_owned());
    move |req| {
        (method == "*" || req.method.eq_ignore_ascii_case(&method)) && req.path.contains(&sub)
    }
}

struct State {
    upstream: String,
    public: String,
    hook: RwLock<Hook>,
    log: Mutex<Vec<ProxiedRequest>>,
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Proxy to `upstream` with `hook`.
    pub fn start(
        upstream: &Registry,
        hook: impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync + 'static,
    ) -> Proxy {
        Proxy::start_url(&upstream.base_url(), hook)
    }

    /// Proxy to `upstream` without interfering.
    pub fn passthrough(upstream: &Registry) -> Proxy {
        Proxy::start(upstream, |_| None)
    }

    /// Proxy to `upstream`, giving `fault` to the first `n` requests that
    /// `matcher` accepts (see [`fail_first`], [`matching`]).
    pub fn fail_first(
        upstream: &Registry,
        n: usize,
        matcher: impl Fn(&ProxyRequest) -> bool + Send + Sync + 'static,
        fault: Fault,
    ) -> Proxy {
        Proxy::start(upstream, fail_first(n, matcher, fault))
    }

    /// Proxy to any base URL (`http(s)://host:port`, e.g. a token issuer).
    pub fn start_url(
        upstream_base_url: &str,
        hook: impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync + 'static,
    ) -> Proxy {
        let (listener, addr) = net::bind_loopback();
        let state = Arc::new(State {
            upstream: upstream_base_url.trim_end_matches('/').to_owned(),
            public: format!("http://{addr}"),
            hook: RwLock::new(Arc::new(hook)),
            log: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = net::bg().spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                };
                // A second handle on the socket, to set SO_LINGER for resets
                // while hyper owns the stream.
                let Ok(sock) = socket2::SockRef::from(&stream).try_clone() else {
                    continue;
                };
                let (st, sock) = (st.clone(), Arc::new(sock));
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(st.clone(), sock.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Proxy { addr, state, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host/reference` through the proxy.
    pub fn image(&self, reference: &str) -> String {
        format!("{}/{reference}", self.host())
    }

    /// Replace the hook (e.g. seed through the proxy, then start failing).
    pub fn set_hook(&self, hook: impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync + 'static) {
        *self.state.hook.write().unwrap() = Arc::new(hook);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests had `method` (`"*"` for any) and a path containing
    /// `path_substring`.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                (method == "*" || r.method.eq_ignore_ascii_case(method))
                    && r.path.contains(path_substring)
            })
            .count()
    }

    /// How many requests got a fault.
    pub fn faults_injected(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.fault.is_some())
            .count()
    }

    /// How many requests got each kind of fault ([`Fault::kind`]).
    pub fn fault_tally(&self) -> BTreeMap<String, usize> {
        let mut tally = BTreeMap::new();
        for fault in self.state.log.lock().unwrap().iter().flat_map(|r| &r.fault) {
            *tally.entry(fault.kind()).or_insert(0) += 1;
        }
        tally
    }

    /// How many requests the proxy has seen.
    pub fn request_count(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returned to hyper to drop the connection without a response.
#[derive(Debug)]
struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Abort {}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

async fn handle(
    state: Arc<State>,
    sock: Arc<socket2::Socket>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Abort> {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let mut info = ProxyRequest {
        seq: 0,
        method: req.method().as_str().to_owned(),
        path: path.clone(),
        headers: req.headers().clone(),
    };
    let hook = state.hook.read().unwrap().clone();
    // Under the log lock, so that `seq` is the request's index in the log.
    let (idx, fault) = {
        let mut log = state.log.lock().unwrap();
        info.seq = log.len();
        let fault = hook(&info);
        log.push(ProxiedRequest {
            method: info.method.clone(),
            path: path.clone(),
            fault: fault.clone(),
            status: None,
        });
        (info.seq, fault)
    };
    let set_status = |s: u16| state.log.lock().unwrap()[idx].status = Some(s);
    match &fault {
        Some(Fault::Reset) => {
            let _ = sock.set_linger(Some(Duration::ZERO));
            return Err(Abort);
        }
        Some(Fault::Close) => return Err(Abort),
        Some(Fault::ResetMidUpload { after }) => {
            // Bounded: `after` bytes, or the body's end, or the client's error.
            let mut body = Body::new(req.into_body()).into_data_stream();
            let mut read = 0;
            while read < *after {
                match body.next().await {
                    Some(Ok(data)) => read += data.len(),
                    _ => break,
                }
            }
            let _ = sock.set_linger(Some(Duration::ZERO));
            return Err(Abort);
        }
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => {
            set_status(*status);
            let mut resp = Response::new(Body::from(body.clone()));
            *resp.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::try_from(k.as_str()),
                    HeaderValue::try_from(v.as_str()),
                ) {
                    resp.headers_mut().append(k, v);
                }
            }
            return Ok(resp);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }

    // Forward.
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    let body = req.into_body();
    let empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
    let forward_path = match &fault {
        Some(Fault::Rewrite(rewritten)) => rewritten.as_str(),
        _ => path.as_str(),
    };
    let mut upstream_req = net::bg_client()
        .request(method, format!("{}{forward_path}", state.upstream))
        .headers(headers);
    if !empty {
        upstream_req = upstream_req.body(reqwest::Body::wrap_stream(
            Body::new(body).into_data_stream(),
        ));
    }
    let upstream = match upstream_req.send().await {
        Ok(r) => r,
        Err(e) => {
            set_status(502);
            let mut resp = Response::new(Body::from(format!("proxy: upstream failed: {e}")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(resp);
        }
    };
    set_status(upstream.status().as_u16());
    let mut resp = Response::builder().status(upstream.status());
    let mut headers = upstream.headers().clone();
    strip_hop_by_hop(&mut headers);
    if let Some(loc) = headers.get("location").and_then(|v| v.to_str().ok()) {
        if let Some(rest) = loc.strip_prefix(&state.upstream) {
            if let Ok(v) = HeaderValue::try_from(format!("{}{rest}", state.public)) {
                headers.insert("location", v);
            }
        }
    }
    if let Some(Fault::AddResponseHeader(name, value)) = &fault {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(k, v);
        }
    }
    if let Some(Fault::AddResponseHeaders(added)) = &fault {
        for (name, value) in added {
            if let (Ok(k), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.append(k, v);
            }
        }
    }
    if let Some(h) = resp.headers_mut() {
        *h = headers;
    }
    let stream = upstream.bytes_stream();
    let body = match fault {
        Some(Fault::CorruptBody) => {
            let mut done = false;
            Body::from_stream(stream.map(move |chunk| {
                chunk.map(|b| {
                    if done || b.is_empty() {
                        return b;
                    }
                    done = true;
                    let mut v = b.to_vec();
                    v[0] ^= 0xff;
                    Bytes::from(v)
                })
            }))
        }
        Some(Fault::TruncateBody(n)) => {
            let mut left = n;
            // Ending early (or erroring) short of Content-Length makes hyper
            // drop the connection.
            Body::from_stream(stream.map(move |chunk| -> Result<Bytes, std::io::Error> {
                let b = chunk.map_err(std::io::Error::other)?;
                if left == 0 {
                    return Err(std::io::Error::other("truncated by fault injection"));
                }
                let take = left.min(b.len());
                left -= take;
                Ok(b.slice(..take))
            }))
        }
        Some(Fault::StallBody { after }) => {
            // `after` bytes, then silence until the client goes away or
            // STALL_LIMIT passes; a body shorter than `after` just ends.
            let state = (stream.boxed(), after, false);
            Body::from_stream(futures::stream::unfold(
                state,
                |(mut stream, left, done)| async move {
                    if done {
                        return None;
                    }
                    if left == 0 {
                        tokio::time::sleep(STALL_LIMIT).await;
                        let stalled = std::io::Error::other("stalled by fault injection");
                        return Some((Err(stalled), (stream, 0, true)));
                    }
                    match stream.next().await? {
                        Ok(b) => {
                            let take = left.min(b.len());
                            Some((Ok(b.slice(..take)), (stream, left - take, false)))
                        }
                        Err(e) => Some((Err(std::io::Error::other(e)), (stream, 0, true))),
                    }
                },
            ))
        }
        _ => Body::from_stream(stream),
    };
    Ok(resp
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty())))
}
