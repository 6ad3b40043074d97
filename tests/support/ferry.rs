//! Running the `ferry` binary under test: finding (and if needed building)
//! it next to the test executable, and a preconfigured [`Command`] whose
//! environment cannot leak the developer's own registry credentials or
//! settings into a test (`HOME` is an empty temp dir, `DOCKER_CONFIG`,
//! `REGISTRY_AUTH_FILE`, `XDG_*`, proxies, `RUST_LOG` and `FERRY_*` are
//! removed, `NO_COLOR=1`), and its captured [`Output`] (with the
//! `(source, target)` pairs a `ferry plan` printed); and [`run_bounded`], for any
//! command that must finish on its own within a limit.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The workspace root (`tests/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `ferry` binary: `$FERRY_TEST_BIN` if set, else `ferry` in the target
/// profile directory of the running test executable
/// (`target/debug/deps/it-xxxx` → `target/debug/ferry`). The first call per
/// process runs `cargo build -p ferry-cli --bin ferry` for that profile
/// (a quick no-op when it is fresh; `cargo test -p ferry-tests` alone does
/// not rebuild another package's binary) unless `FERRY_TEST_NO_BUILD` is
/// set and the binary exists. A failed build is not retried: every caller
/// panics with the same compiler output.
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(locate_or_build) {
        Ok(bin) => bin.clone(),
        Err(why) => panic!("no ferry binary: {why}"),
    }
}

fn locate_or_build() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("FERRY_TEST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("test exe has no directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join(format!("ferry{}", std::env::consts::EXE_SUFFIX));
    if std::env::var_os("FERRY_TEST_NO_BUILD").is_some() && bin.exists() {
        return Ok(bin);
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "ferry-cli",
        "--bin",
        "ferry",
    ]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        return Err(format!(
            "cargo build -p ferry-cli failed ({}):\n{tail}",
            out.status
        ));
    }
    if !bin.exists() {
        return Err(format!("{} missing after cargo build", bin.display()));
    }
    Ok(bin)
}

/// An empty per-process `HOME` for ferry (and skopeo) runs.
pub fn test_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("ferry-home-")
            .tempdir()
            .expect("creating test HOME");
        crate::remove_at_exit(d.path().to_path_buf());
        d
    })
    .path()
}

/// Remove from `cmd` every variable that could point a tool at the
/// developer's own credentials, config or proxies.
pub(crate) fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let upper = k.to_ascii_uppercase();
        if upper.starts_with("FERRY_")
            || upper.starts_with("XDG_")
            || upper.ends_with("_PROXY")
            || matches!(
                upper.as_str(),
                "RUST_LOG"
                    | "DOCKER_CONFIG"
                    | "REGISTRY_AUTH_FILE"
                    | "DOCKER_CERT_PATH"
                    | "DOCKER_HOST"
            )
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", test_home()).env("NO_COLOR", "1");
}

/// A `Command` for [`ferry_bin`] with a scrubbed environment (see module
/// docs) and stdin closed.
pub fn ferry() -> Command {
    ferry_at(ferry_bin())
}

/// [`ferry`] for another program: a release binary, or one run through an emulator
/// (`wine`) with the binary as its first argument.
pub fn ferry_at(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    scrub_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Captured result of a run.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The `(source, target)` pairs of a `ferry plan`'s output (one JSON object a line),
    /// in printed order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.stdout
            .lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
                (
                    v["source"].as_str().unwrap().to_string(),
                    v["target"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Panic (showing stdout and stderr) unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "expected success, got {}\n{self}",
            self.status
        );
        self
    }

    /// Panic (showing stdout and stderr) unless it exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit status\n{self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

impl From<std::process::Output> for Output {
    fn from(o: std::process::Output) -> Self {
        Output {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run [`ferry`] with `args` and extra `envs`, capturing its output. Blocks
/// the calling thread (fine in a multi-thread Tokio test: the registries,
/// issuers and proxies run elsewhere).
pub fn run_ferry<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)]) -> Output {
    let mut cmd = ferry();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running ferry").into()
}

/// Runs `cmd` to completion with its output captured, killing it (and panicking) if it has
/// not finished within `limit`: for runs that must end on their own.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> std::process::Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for {program}: {e}")),
        Err(_) => {
            // SAFETY: killing the child we started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("{program} did not finish within {limit:?}");
        }
    }
}
