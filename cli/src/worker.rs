//! `ferry worker`: consume a queue of copy jobs from any machine (ECS, Kubernetes, a VM),
//! the way the copier Lambda does: long polling, visibility renewed while an image copies,
//! deleted on success. Plan jobs are expanded into copy jobs on the same queue. The first SIGTERM or Ctrl-C stops receiving and lets the jobs in
//! flight finish; a second stops starting new blobs, and their jobs are left to reappear.

use std::sync::Arc;
use std::time::Duration;

use ferry::copy::Copier;
use ferry::dispatch::{DispatchOptions, FanOut};
use ferry::env::ProcessEnv;
use ferry::input::{load_images_file, DEFAULT_CONCURRENCY};
use ferry::queue::{Queue, SqsQueue};
use ferry::rules::{Defaults, ImmutableTags};
use ferry::s3::S3;
use ferry::worker::{work, JobPolicy, PlanExpander, WorkerOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::args::WorkerArgs;
use crate::exit::Status;
use crate::inputs::{job_copier, load_auth};

pub async fn run(args: WorkerArgs) -> anyhow::Result<Status> {
    let s3 = S3::new();
    let registries = load_auth(args.auth.as_ref(), &s3).await?;
    let queue: Arc<dyn Queue> = Arc::new(SqsQueue::from_env(&args.queue_url).await);
    let rules = match &args.images {
        Some(images) => {
            let env = ProcessEnv;
            let defaults = Defaults::from_flags_or_env(None, None, &env);
            Some(load_images_file(images, &defaults, &env, &s3).await?)
        }
        None => None,
    };
    let immutable = ImmutableTags::new(
        args.immutable.immutable_tags,
        rules.as_deref().unwrap_or_default(),
    );
    let copier = job_copier(
        Arc::clone(&registries),
        args.transfers.proc,
        args.referrer_args.options(),
        immutable.clone(),
    );
    let policy = match rules {
        Some(rules) => JobPolicy::Rules(rules.into()),
        None => {
            tracing::warn!("no --images: every well-formed job on the queue will be run");
            JobPolicy::Any
        }
    };
    let options = WorkerOptions {
        policy,
        max_in_flight: args.jobs,
        wait: Duration::from_secs(args.wait),
        visibility: Duration::from_secs(args.visibility),
        exit_when_empty: args.exit_when_empty,
        plans: Some(PlanExpander {
            queue: Arc::clone(&queue),
            registries,
            options: DispatchOptions {
                concurrency: DEFAULT_CONCURRENCY,
                fan_out: FanOut::Auto,
                // The copier's: the flag's pattern and --images' rules cover every slice.
                immutable,
                ..DispatchOptions::default()
            },
        }),
        ..WorkerOptions::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let signals = tokio::spawn(stop_on_signals(stop_tx, Arc::clone(&copier)));
    tracing::info!(queue = %args.queue_url, "worker started");
    let summary = work(queue, copier, options, stop).await;
    signals.abort();
    let summary = summary?;
    eprintln!("ferry: worker: {summary}");
    // A failed attempt may still be waiting for its redelivery when the worker leaves.
    Ok(if summary.failed == 0 && summary.retried == 0 {
        Status::Success
    } else {
        Status::Failed
    })
}

/// First signal: stop receiving. Second: stop starting new blobs too.
async fn stop_on_signals(stop: watch::Sender<bool>, copier: Arc<Copier>) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let next = async |term: &mut tokio::signal::unix::Signal| {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    next(&mut term).await;
    eprintln!("ferry: worker stopping: receiving no more jobs, finishing those in flight");
    let _ = stop.send(true);
    next(&mut term).await;
    eprintln!("ferry: worker stopping now: no new blobs; unfinished jobs will reappear");
    copier.stop();
}
