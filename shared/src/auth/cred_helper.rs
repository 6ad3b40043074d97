//! Docker credential helpers: finding `docker-credential-<name>` in a `PATH`, running it with
//! `get` and a server URL, and reading its reply (`{"Username", "Secret"}`, where the
//! username `<token>` marks an identity token). Which helper to ask for which registry, with
//! which server URL, and caching the answers belong to `auth::docker_config`.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;

use crate::credentials::{Credentials, Secret};

/// What a credential helper prints on stdout when it has nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// How much of a failing helper's output a message quotes.
const DETAIL_LIMIT: usize = 300;

/// How long a helper may take unless configured otherwise (`FERRY_CREDENTIAL_HELPER_TIMEOUT`,
/// seconds): a helper that waits for a login prompt must not hang ferry.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A helper's reply is a small JSON document; more output than this is not read.
const MAX_OUTPUT: u64 = 1 << 20;

/// How often a running helper is checked on.
const POLL: Duration = Duration::from_millis(20);

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
    #[error("get {server_url} did not answer within {after:?}; it was stopped")]
    TimedOut { server_url: String, after: Duration },
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
/// in `search_path`, and stops it if it has not answered within `timeout`.
pub(super) fn run_helper(
    helper: &str,
    server_url: &str,
    search_path: Option<&str>,
    timeout: Duration,
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
        // The URL is far smaller than a pipe's buffer, so this does not block.
        let _ = stdin.write_all(server_url.as_bytes());
    }
    let output = wait_with_timeout(child, timeout)
        .map_err(cannot_run)?
        .ok_or_else(|| HelperProblem::TimedOut {
            server_url: server_url.to_string(),
            after: timeout,
        })?;
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

/// The child's output once it exits, or `None` (the child killed) after `timeout`. Its
/// pipes are drained on threads of their own, so a chatty helper cannot block on them, and
/// each is read up to 1 MiB. `discover` runs Kubernetes exec credential plugins with it.
pub(crate) fn wait_with_timeout(
    mut child: Child,
    timeout: Duration,
) -> std::io::Result<Option<Output>> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    // Bounded by `timeout`.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(POLL);
    };
    Ok(Some(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
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

    /// Issue 12, row 11: a helper that never answers hung ferry. It is stopped after the
    /// timeout, and the error names it.
    #[cfg(unix)]
    #[test]
    fn a_helper_that_never_answers_is_stopped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = write(
            dir.path(),
            "docker-credential-stuck",
            "#!/bin/sh\nexec sleep 30\n",
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let path = dir.path().display().to_string();
        let problem =
            run_helper("stuck", "quay.io", Some(&path), Duration::from_millis(300)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let message = HelperError {
            helper: "stuck".into(),
            problem,
        }
        .to_string();
        assert_eq!(
            message,
            "credential helper docker-credential-stuck: get quay.io did not answer within 300ms; it was stopped"
        );
    }
}
