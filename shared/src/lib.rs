//! ferry's core library: every piece of domain logic lives here, one module per concept.
//! The `ferry` binary and the Lambda functions only parse input and wire these together.
//!
//! Modules are listed bottom up; each imports only from those above it in this list.

// Layer 0: the spec's nouns and small shared pieces.
pub mod backoff;
pub mod credentials;
pub mod env;
pub mod error;
pub mod files;
pub mod image;
pub mod platform;
pub mod reference;
// After `platform`: index entries and configs are read into its `Platform`.
pub mod manifest;
pub mod report;

// Layer 1: input as written, validated.
pub mod auth;
pub mod input;
pub mod rules;

// Layer 2: the registry client.
pub mod registry;

// Layer 3: resolving rules, copying images, jobs.
pub mod copy;
pub mod job;
pub mod plan;

// Layer 4: what runs the copies.
pub mod dispatch;
pub mod queue;
pub mod webhook;
pub mod worker;
