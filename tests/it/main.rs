//! ferry's integration tests: one binary, one module per area, all against real
//! `docker-registry` processes started by the `support` harness on loopback ports. The
//! shared set-up (registries, auth and images files, ferry runs, reports) is
//! `support::fixture`'s; what stays here is particular to the queue and webhook tests.

mod auth;
mod bad_input;
mod copy_paths;
mod crash;
mod discover;
mod ecr;
mod fanout;
mod faults;
mod hostile;
mod immutable;
mod multitarget;
mod plan;
mod planner_referrers;
mod queue;
mod s3;
mod ratelimit;
mod referrers;
mod release;
mod select;
mod serverless;
mod status;
mod sync;
mod transport;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::ferry::copy::{Copier, CopyOptions, NoProgress};
use ::ferry::env::MapEnv;
use ::ferry::registry::Registries;
use ferry::queue::{Delivery, Queue};
use serde_json::Value;
use support::{read_json, workspace_root};

/// Every wait for something to arrive gives up after this long.
pub const LOOP_LIMIT: Duration = Duration::from_secs(30);

/// A fixture from `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    read_json(&workspace_root().join("tests/fixtures").join(name))
}

/// Receives until `want` messages arrived or [`LOOP_LIMIT`] passed, deleting none.
pub async fn receive_at_least(queue: &dyn Queue, want: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + LOOP_LIMIT;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        got.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    got
}

/// A copier with the default options for these plain-HTTP registries, as a worker builds
/// one: for tests that hand it jobs themselves.
pub async fn copier_for(registries: &[&support::Registry]) -> Copier {
    let auth: String = registries
        .iter()
        .map(|r| format!("{}: {{insecure: true}}\n", r.host()))
        .collect();
    let env = MapEnv::new([("FERRY_AUTH", auth.as_str())]);
    let inputs = ::ferry::input::load_inputs_from_env(&env, false, &::ferry::s3::S3::new())
        .await
        .unwrap();
    let registries = Arc::new(Registries::from_env(Arc::new(inputs.auth), &env));
    Copier::new(registries, CopyOptions::default(), Arc::new(NoProgress))
}
