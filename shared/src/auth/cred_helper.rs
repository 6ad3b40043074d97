//! Docker credential helpers: finding `docker-credential-<name>` in a `PATH`, running it with
//! `get` and a server URL, and reading its reply (`{"Username", "Secret"}`, where the
//! username `<token>` marks an identity token). Which helper to ask for which registry, with
//! which server URL, and caching the answers belong to `auth::docker_config`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;

use crate::credentials::{Credentials, Secret};

/// What a credential helper prints on stdout when it has nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// How much of a failing helper's output a message quotes.
const DETAIL_LIMIT: usize = 300;

/// Why a helper gave no credentials. Never holds the helper's successful output.
#[derive(Debug, Clone, Error)]
pub enum HelperProblem {
    #[error("helper names cannot contain path separators")]
    PathInName,
    #[error("{program} not found in PATH")]
    NotFound { program: String },
    #[error("cannot run {}: {reason}", program.display())]
    CannotRun {
        program: PathBuf,
        reason: Arc<std::io::Error>,
    },
    /// `detail` is the start of its stderr, else of its stdout.
    #[error("get {server_url} failed ({status}): {detail}")]
    Failed {
        server_url: String,
        status: ExitStatus,
        detail: String,
    },
    #[error(
        "output is not {{\"ServerURL\",\"Username\",\"Secret\"}} JSON (line {line}, column {column})"
    )]
    BadReply { line: usize, column: usize },
}

/// A helper's problem, naming the helper.
#[derive(Debug, Clone, Error)]
#[error("credential helper docker-credential-{helper}: {problem}")]
pub struct HelperError {
    pub helper: String,
    pub problem: HelperProblem,
}

/// What a helper's `get` gives: credentials, or `None` when it has none for the server.
pub(super) type HelperResult = Result<Option<Credentials>, HelperProblem>;

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with `server_url` on stdin, looking the program up
/// in `search_path`.
pub(super) fn run_helper(
    helper: &str,
    server_url: &str,
    search_path: Option<&str>,
) -> HelperResult {
    let program = find_helper(helper, search_path)?;
    let cannot_run = |e| HelperProblem::CannotRun {
        program: program.clone(),
        reason: Arc::new(e),
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot_run)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin closes the pipe; its exit status tells.
        let _ = stdin.write_all(server_url.as_bytes());
    }
    let output = child.wait_with_output().map_err(cannot_run)?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = [stderr.trim(), stdout.trim()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("no output");
        return Err(HelperProblem::Failed {
            server_url: server_url.to_string(),
            status: output.status,
            detail: detail.chars().take(DETAIL_LIMIT).collect(),
        });
    }
    parse_helper_reply(&output.stdout)
}

fn parse_helper_reply(stdout: &[u8]) -> HelperResult {
    let reply: HelperReply =
        serde_json::from_slice(stdout).map_err(|e| HelperProblem::BadReply {
            line: e.line(),
            column: e.column(),
        })?;
    if reply.username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(Secret::new(reply.secret))));
    }
    Ok(Credentials::basic_unless_empty(
        Some(reply.username),
        Some(reply.secret),
    ))
}

/// Looks `docker-credential-<helper>` up in `search_path` (a `PATH` value from `Env`, so
/// tests need not change the process environment).
fn find_helper(helper: &str, search_path: Option<&str>) -> Result<PathBuf, HelperProblem> {
    if helper.contains(['/', '\\']) {
        return Err(HelperProblem::PathInName);
    }
    let program = format!("docker-credential-{helper}");
    let dirs = search_path.map(std::env::split_paths).into_iter().flatten();
    dirs.filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| executable_names(&program).map(move |name| dir.join(name)))
        .find(|candidate| is_executable(candidate))
        .ok_or(HelperProblem::NotFound { program })
}

fn executable_names(program: &str) -> impl Iterator<Item = String> {
    let windows = cfg!(windows).then(|| format!("{program}.exe"));
    std::iter::once(program.to_string()).chain(windows)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{basic, docker_env, repo, write};
    use crate::auth::AuthConfig;

    /// A fake helper: answers per server URL and counts its runs per URL.
    const HELPER: &str = r#"#!/bin/sh
[ "$1" = get ] || exit 3
read -r url
dir=$(dirname "$0")
echo run >> "$dir/calls-$(echo "$url" | tr -c 'a-z0-9\n' _)"
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"hub-token"}' ;;
  quay.io) echo '{"ServerURL":"quay.io","Username":"helper","Secret":"helper-pass"}' ;;
  https://ghcr.io) echo '{"ServerURL":"https://ghcr.io","Username":"gh","Secret":"gh-pass"}' ;;
  broken.example.com) echo "keychain locked" >&2; exit 2 ;;
  garbage.example.com) echo 'Secret=leaked' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#;

    fn calls(dir: &Path, url_slug: &str) -> usize {
        std::fs::read_to_string(dir.join(format!("calls-{url_slug}")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = write(dir.path(), "docker-credential-ferrytest", HELPER);
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = docker_env(
            dir.path(),
            r#"{"auths": {"https://ghcr.io": {}, "inline.example.com": {"username": "i", "password": "ip"}},
                "credHelpers": {"quay.io": "ferrytest", "broken.example.com": "ferrytest",
                                "garbage.example.com": "ferrytest", "missing.example.com": "absent"},
                "credsStore": "ferrytest"}"#,
        );
        let auth = AuthConfig::empty().with_docker_config(&env).unwrap();

        assert_eq!(
            auth.credentials_for(&repo("quay.io/a/b")).unwrap(),
            basic("helper", "helper-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("quay.io/c/d")).unwrap(),
            basic("helper", "helper-pass")
        );
        assert_eq!(
            calls(dir.path(), "quay_io"),
            1,
            "helper runs once per registry"
        );
        assert!(auth
            .describe_match(&repo("quay.io/a/b"))
            .contains("docker-credential-ferrytest (credHelpers"));

        // credsStore: Docker Hub is asked for by its legacy URL, others by their auths key.
        assert_eq!(
            auth.credentials_for(&repo("nginx")).unwrap(),
            Some(Credentials::IdentityToken(Secret::new("hub-token")))
        );
        assert_eq!(
            auth.credentials_for(&repo("ghcr.io/o/r")).unwrap(),
            basic("gh", "gh-pass")
        );
        assert_eq!(
            auth.credentials_for(&repo("inline.example.com/o/r"))
                .unwrap(),
            basic("i", "ip")
        );
        assert_eq!(
            auth.credentials_for(&repo("unknown.example.com/o/r"))
                .unwrap(),
            None
        );
        assert!(auth.describe_match(&repo("nginx")).contains("credsStore"));

        let err = auth
            .credentials_for(&repo("broken.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-ferrytest") && err.contains("keychain locked"),
            "{err}"
        );
        assert!(auth
            .credentials_for(&repo("broken.example.com/o/r"))
            .is_err());
        assert_eq!(
            calls(dir.path(), "broken_example_com"),
            1,
            "failures are cached too"
        );

        let err = auth
            .credentials_for(&repo("garbage.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not {") && !err.contains("leaked"), "{err}");

        let err = auth
            .credentials_for(&repo("missing.example.com/o/r"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker-credential-absent not found in PATH"),
            "{err}"
        );
    }

    #[test]
    fn replies() {
        let reply = br#"{"ServerURL":"x","Username":"<token>","Secret":"t"}"#;
        assert_eq!(
            parse_helper_reply(reply).unwrap(),
            Some(Credentials::IdentityToken(Secret::new("t")))
        );
        let empty = br#"{"ServerURL":"x","Username":"","Secret":""}"#;
        assert_eq!(parse_helper_reply(empty).unwrap(), None);
        let err = parse_helper_reply(b"Secret=leaked").unwrap_err();
        assert!(matches!(err, HelperProblem::BadReply { line: 1, .. }));
        assert!(!err.to_string().contains("leaked"), "{err}");
    }

    #[test]
    fn helpers_are_found_only_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str();
        assert!(matches!(
            find_helper("../x", path),
            Err(HelperProblem::PathInName)
        ));
        assert_eq!(
            find_helper("absent", path).unwrap_err().to_string(),
            "docker-credential-absent not found in PATH"
        );
    }
}
