//! ferry's core library: every piece of domain logic lives here, one module per concept.
//! The `ferry` binary and the Lambda functions only parse input and wire these together.
//!
//! Modules are listed bottom up: each imports only from those listed before it
//! (`tests/layers.rs` checks this).

// Layer 0: the spec's nouns, and small pieces everyone uses.
/// The AWS SDK set up once: its HTTPS stack and configuration from the environment.
pub mod aws;
/// Jittered exponential backoff, the one formula every retry uses.
pub mod backoff;
/// Points in time in messages and reports (RFC 3339, UTC).
pub mod timestamp;
/// The catalogue of error kinds (`Kind`) every library error maps to.
pub mod error;
/// Environment variables behind a trait, so tests pass their own.
pub mod env;
/// Input documents in Amazon S3: `s3://BUCKET/KEY` checked, objects read with a size cap.
pub mod s3;
/// Reading YAML or JSON input documents, from a local file or S3.
pub mod files;
/// Image references by the distribution grammar: registry, repository, tag, digest.
pub mod reference;
/// What a run did, image by image.
pub mod report;
/// Platforms and the `--os`/`--arch` filter, parsed once.
pub mod platform;
/// Manifests, indexes and image configs as the formats define them; media types.
pub mod manifest;
/// Secrets, credentials, TLS settings, and the store the registry client asks.
pub mod credentials;
/// A planned image, its copy options, and what "stale" means for a target.
pub mod image;

// Layer 1: input as written, validated.
/// image-syncer's images file: rules, selection and target naming.
pub mod rules;
/// Amazon ECR: registry passwords from the AWS credential chain, repositories created on push.
pub mod ecr;
/// image-syncer's auth file, the Docker config and credential helpers.
pub mod auth;
/// Which input files to read, and the functions' settings from their environment.
pub mod input;
/// A warm function's configuration read again when its files in S3 change.
pub mod reload;
/// `ferry discover`: the images file from a Kubernetes cluster's workloads or its manifests.
pub mod discover;

// Layer 2: the registry client.
/// Docker Registry V2 / OCI distribution client, one file per API area.
pub mod registry;

// Layer 3: resolving rules, copying images, describing jobs.
/// Target repositories' tags listed once per run, and the copies of immutable tags they spare.
pub mod target_tags;
/// Rules resolved against the source registries into planned images.
pub mod plan;
/// The copy engine: one planned image to its targets, streamed and verified.
pub mod copy;
/// One queue message: a planned image and its options, validated.
pub mod job;

// Layer 4: what runs the copies.
/// The job queue: in memory or SQS.
pub mod queue;
/// Planning into the queue: one job per image some target lacks.
pub mod dispatch;
/// Running queued jobs: a Lambda batch, or `ferry worker`'s loop.
pub mod worker;
/// Registry push notifications turned into jobs.
pub mod webhook;
/// Job outcomes and plan summaries as CloudWatch Embedded Metric Format lines.
pub mod metrics;
