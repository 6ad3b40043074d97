//! skopeo as an independent reference client: flags that make it trust (or
//! not verify) and log in to a test [`Registry`], `inspect --raw` to read
//! a manifest exactly as the registry stores it, and the byte-for-byte
//! comparison of two such reads that copy tests end with.

use std::process::{Command, Stdio};

use crate::certs::Pki;
use crate::registry::Registry;

/// skopeo flags for `reg`: `--{prefix}cert-dir` with the test CA for TLS
/// registries or `--{prefix}tls-verify=false` for HTTP ones, plus
/// `--{prefix}creds` for auth modes. `prefix` is `""` for `inspect`, `"src-"`
/// or `"dest-"` for `copy`.
pub fn skopeo_flags(reg: &Registry, prefix: &str) -> Vec<String> {
    let mut flags = Vec::new();
    if reg.is_tls() {
        flags.push(format!(
            "--{prefix}cert-dir={}",
            Pki::get().ca_dir().display()
        ));
    } else {
        flags.push(format!("--{prefix}tls-verify=false"));
    }
    if let Some((user, password)) = reg.credentials() {
        flags.push(format!("--{prefix}creds={user}:{password}"));
    }
    flags
}

/// A `skopeo` command with the same scrubbed environment as ferry's.
pub fn skopeo() -> Command {
    let mut cmd = Command::new("skopeo");
    crate::ferry::scrub_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// `skopeo inspect --raw docker://HOST/reference`: the manifest bytes.
/// Panics with skopeo's stderr on failure.
pub fn skopeo_inspect_raw(reg: &Registry, reference: &str) -> Vec<u8> {
    let out = skopeo()
        .arg("inspect")
        .arg("--raw")
        .args(skopeo_flags(reg, ""))
        .arg(format!("docker://{}", reg.image(reference)))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Asserts that `skopeo inspect --raw` reads the same manifest bytes at `a`'s `a_ref` and
/// `b`'s `b_ref`.
#[track_caller]
pub fn assert_same_raw(a: &Registry, a_ref: &str, b: &Registry, b_ref: &str) {
    assert_eq!(
        skopeo_inspect_raw(a, a_ref),
        skopeo_inspect_raw(b, b_ref),
        "{} and {} differ",
        a.image(a_ref),
        b.image(b_ref)
    );
}
