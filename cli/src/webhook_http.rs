//! The HTTP side of `ferry serve`: accepting connections (at most `MAX_CONNECTIONS`, each
//! given `HEADER_TIMEOUT` to send its headers), and turning a request into the webhook
//! library's `HttpRequest` once the library has screened its method and secret, so an
//! unauthenticated sender never has its body read. Deciding what a request means is
//! `ferry::webhook`'s; wiring the server to the queue and the copier is `serve`'s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ferry::queue::Queue;
use ferry::webhook::{HttpRequest, HttpResponse, Webhook, MAX_BODY_BYTES};
use futures::StreamExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections open at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an admitted request may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests in flight get to finish once the server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub webhook: Arc<Webhook>,
    pub queue: Arc<dyn Queue>,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight end.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    // Runs until the shutdown signal.
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}

/// Any request but `/healthz`: the webhook library decides (405, 401, 413, 408, 400, 200,
/// 202). The method and secret are screened before a byte of the body is read.
pub async fn deliver(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let (method, path, query) = (
        parts.method.to_string(),
        parts.uri.path().to_string(),
        parts.uri.query().map(str::to_string),
    );
    if let Some(refusal) = state
        .webhook
        .screen(&method, &path, &headers, query.as_deref())
    {
        return to_response(refusal);
    }
    let Ok(body) = tokio::time::timeout(BODY_TIMEOUT, read_capped(body)).await else {
        tracing::warn!(path = %path, "webhook request refused: body not sent in time");
        return to_response(HttpResponse::error(408, "the body was not sent in time"));
    };
    let request = HttpRequest {
        method,
        path,
        query,
        headers,
        body,
    };
    let response = state
        .webhook
        .handle_http(&request, state.queue.as_ref())
        .await;
    to_response(response)
}

fn to_response(response: HttpResponse) -> Response {
    let mut out = (
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        format!("{}\n", response.body),
    )
        .into_response();
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

/// The body, but never more than one byte past the limit: enough for the library to answer
/// 413 without holding an arbitrarily large upload.
async fn read_capped(body: Body) -> Vec<u8> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = (MAX_BODY_BYTES + 1).saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() > MAX_BODY_BYTES {
            break;
        }
    }
    bytes
}
