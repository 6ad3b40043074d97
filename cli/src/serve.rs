//! `ferry serve`: the webhook for users without AWS. POST on any path is a registry's push
//! notification (the library checks the secret, matches the rules, queues); `GET /healthz`
//! answers 200. Jobs run in this process on an in-memory queue; SIGTERM or Ctrl-C stops
//! accepting requests, then finishes every queued copy before exiting.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use ferry::env::ProcessEnv;
use ferry::queue::{JournalQueue, Queue, SqsQueue};
use ferry::rules::ImmutableTags;
use ferry::webhook::{previous_secret_from_env, secret_from_env, Webhook, WebhookSettings};
use ferry::worker::{work_alongside, WorkerOptions};

use crate::args::ServeArgs;
use crate::exit::{Status, UsageError};
use crate::inputs::{job_copier, load};
use crate::webhook_http::{self, deliver, AppState};

/// A failed job is tried this many times (the in-memory queue has no dead-letter queue).
const MAX_RECEIVES: u32 = 3;

pub async fn run(args: ServeArgs) -> anyhow::Result<Status> {
    let platforms = args.platforms.filter().map_err(UsageError::from)?;
    let (rules, registries) = load(&args.input).await?;
    let immutable = ImmutableTags::new(args.immutable.immutable_tags.clone(), &rules);
    let webhook = Webhook::new(
        rules,
        WebhookSettings {
            secret: secret_from_env(&ProcessEnv),
            previous_secret: previous_secret_from_env(&ProcessEnv),
            default_registry: args.webhook_registry.clone(),
            platforms,
            referrers: args.referrer_args.options(),
        },
    )?;
    // Accepted jobs are durable either way: journaled here, or in SQS.
    let (queue, local): (Arc<dyn Queue>, bool) = match &args.queue_url {
        Some(url) => (Arc::new(SqsQueue::from_env(url).await), false),
        None => {
            let journal = JournalQueue::open(&args.state_dir, Duration::from_secs(120)).await?;
            (Arc::new(journal), true)
        }
    };
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
    let server = webhook_http::serve(listener, app, termination());
    if !local {
        server.await?;
        eprintln!("ferry: serve: stopped; the queue's workers copy what was sent");
        return Ok(Status::Success);
    }
    let copier = job_copier(
        registries,
        args.transfers.proc,
        args.referrer_args.options(),
        immutable,
    );
    // When the server stops (no more requests), what is queued is finished before leaving.
    let (served, worked) = work_alongside(queue, copier, options, server).await?;
    served?;
    eprintln!("ferry: serve: {worked}");
    Ok(Status::Success)
}

/// Completes on the first SIGTERM or Ctrl-C.
async fn termination() {
    crate::interrupt::StopSignals::install().next().await;
    eprintln!("ferry: stopping: no new requests; finishing queued copies");
}
