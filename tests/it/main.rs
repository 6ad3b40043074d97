//! ferry's integration tests: one binary, one module per area, all against real
//! `docker-registry` processes started by the `support` harness on loopback ports.

mod auth;
mod bad_input;
mod copy_paths;
mod plan;
mod queue;
mod serverless;
mod sync;
mod transport;
mod webhook;

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use ferry::queue::{Delivery, Queue};
use serde_json::Value;
use support::{run_ferry, workspace_root, write_file, Output, Registry};

/// Every wait for something to arrive gives up after this long.
pub const LOOP_LIMIT: Duration = Duration::from_secs(30);

/// Short retry delays so fault tests stay quick.
pub const FAST_RETRIES: (&str, &str) = ("FERRY_RETRY_BASE_MS", "5");

/// Runs `ferry plan` with the given files and extra arguments.
pub fn ferry_plan(
    auth: Option<&Path>,
    images: &Path,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut args: Vec<String> = vec!["plan".into(), format!("--images={}", images.display())];
    if let Some(auth) = auth {
        args.push(format!("--auth={}", auth.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut all_envs = vec![FAST_RETRIES];
    all_envs.extend_from_slice(envs);
    run_ferry(&args, &all_envs)
}

/// The (source, target) pairs of a plan's output, in printed order.
pub fn pairs(output: &Output) -> Vec<(String, String)> {
    output
        .stdout
        .lines()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
            (
                v["source"].as_str().unwrap().to_string(),
                v["target"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Writes an auth file trusting `registries` as the harness serves them: `insecure` for
/// plain HTTP, the test CA for TLS, and the harness credentials where they have them.
pub fn auth_file(dir: &Path, registries: &[&Registry]) -> PathBuf {
    let mut yaml = String::new();
    for reg in registries {
        yaml.push_str(&format!("{}:\n", reg.host()));
        if reg.is_tls() {
            yaml.push_str(&format!(
                "  ca: {}\n",
                support::Pki::get().ca_cert.display()
            ));
        } else {
            yaml.push_str("  insecure: true\n");
        }
        if let Some((user, password)) = reg.credentials() {
            yaml.push_str(&format!("  username: {user}\n  password: {password}\n"));
        }
    }
    write_file(dir, "auth.yaml", yaml)
}

/// Runs `ferry` (sync, the default command) with these files and extra arguments.
pub fn sync(auth: &Path, images: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        format!("--auth={}", auth.display()),
        format!("--images={}", images.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_ferry(&args, &[FAST_RETRIES])
}

/// A JSON file ferry wrote (a report, a success list).
pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

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
