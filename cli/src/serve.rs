//! `ferry serve`: the webhook for users without AWS. POST on any path is a registry's push
//! notification (the library checks the secret, matches the rules, queues); `GET /healthz`
//! answers 200. Jobs run in this process on an in-memory queue; SIGTERM or Ctrl-C stops
//! accepting requests, then finishes every queued copy before exiting.

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ferry::env::ProcessEnv;
use ferry::queue::{MemoryQueue, Queue};
use ferry::webhook::{secret_from_env, HttpRequest, Webhook, WebhookSettings, MAX_BODY_BYTES};
use ferry::worker::{work_alongside, WorkerOptions};
use futures::StreamExt as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::args::ServeArgs;
use crate::exit::{Status, UsageError};
use crate::inputs::{job_copier, load};

/// A failed job is tried this many times (the in-memory queue has no dead-letter queue).
const MAX_RECEIVES: u32 = 3;

#[derive(Clone)]
struct AppState {
    webhook: Arc<Webhook>,
    queue: Arc<MemoryQueue>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<Status> {
    let platforms = args.platforms.filter().map_err(UsageError::from)?;
    let (rules, registries) = load(&args.input)?;
    let webhook = Webhook::new(
        rules,
        WebhookSettings {
            secret: secret_from_env(&ProcessEnv),
            default_registry: args.webhook_registry.clone(),
            platforms,
        },
    )?;
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(120)));
    let copier = job_copier(registries, args.transfers.proc);
    let state = AppState {
        webhook: Arc::new(webhook),
        queue: Arc::clone(&queue),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(deliver)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "ferry: serving webhooks on http://{}",
        listener.local_addr()?
    );

    let options = WorkerOptions {
        max_receives: Some(MAX_RECEIVES),
        ..WorkerOptions::default()
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(termination());
    // When the server stops (no more requests), what is queued is finished before leaving.
    let (served, worked) = work_alongside(
        queue as Arc<dyn Queue>,
        copier,
        options,
        server.into_future(),
    )
    .await?;
    served?;
    eprintln!(
        "ferry: serve: {} jobs succeeded, {} failed",
        worked.succeeded, worked.failed
    );
    Ok(Status::Success)
}

/// Completes on the first SIGTERM or Ctrl-C.
async fn termination() {
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("ferry: stopping: no new requests; finishing queued copies");
}

/// Any request but `/healthz`: the webhook library decides (405, 401, 413, 400, 200, 202).
async fn deliver(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let request = HttpRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: read_capped(body).await,
    };
    let response = state
        .webhook
        .handle_http(&request, state.queue.as_ref())
        .await;
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
/// 413 (after the secret check) without holding an arbitrarily large upload.
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
