//! The Lambda Runtime API emulator: `cargo lambda watch` serving the workspace's functions
//! on a free loopback port, and `cargo lambda invoke` against it. cargo-lambda comes from
//! PyPI into `<repo>/.venv` (infra/setup.sh), or `FERRY_CARGO_LAMBDA` names the binary.
//!
//! The emulator builds a function on its first invoke and runs it as a child process, so it
//! gets a process group of its own, killed whole when the emulator is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ferry::{run_bounded, workspace_root};
use crate::net::free_port;
use crate::registry::{capture, spawn_with_pdeathsig};

/// How long the emulator may take to listen, and one invoke (with its build) to answer.
const START_LIMIT: Duration = Duration::from_secs(120);
const INVOKE_LIMIT: Duration = Duration::from_secs(600);

/// The cargo-lambda binary.
pub fn cargo_lambda_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_CARGO_LAMBDA") {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("cargo-lambda")
}

/// A running `cargo lambda watch`; dropping it stops it and its functions.
pub struct LambdaEmulator {
    child: Child,
    port: u16,
    logs: Arc<Mutex<Vec<String>>>,
}

impl LambdaEmulator {
    /// Starts the emulator for the workspace with `env` given to every function.
    pub fn start(env: &[(&str, &str)], dir: &Path) -> LambdaEmulator {
        let env_file = dir.join("functions.env");
        let lines: String = env
            .iter()
            .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "")))
            .collect();
        std::fs::write(&env_file, lines).unwrap();
        let port = free_port();
        let mut cmd = Command::new(cargo_lambda_bin());
        cmd.current_dir(workspace_root())
            .args(["lambda", "watch", "--ignore-changes", "--invoke-address"])
            .arg("127.0.0.1")
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--env-file")
            .arg(&env_file)
            .env("PATH", path_with_cargo_lambda())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = spawn_with_pdeathsig(cmd).expect("starting cargo lambda watch");
        let logs = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().unwrap(), logs.clone());
        capture(child.stderr.take().unwrap(), logs.clone());
        let emulator = LambdaEmulator { child, port, logs };
        emulator.wait_until_listening();
        emulator
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + START_LIMIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {} within {START_LIMIT:?}:\n{}",
                self.port,
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the emulator and its functions printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// `cargo lambda invoke FUNCTION --data-file FILE`, answering the function's JSON output.
    pub fn invoke(&self, function: &str, data_file: &Path) -> Value {
        let mut cmd = Command::new(cargo_lambda_bin());
        cmd.current_dir(workspace_root())
            .args([
                "lambda",
                "invoke",
                function,
                "--invoke-address",
                "127.0.0.1",
            ])
            .arg("--invoke-port")
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(data_file)
            .env("PATH", path_with_cargo_lambda())
            .stdin(Stdio::null());
        let output = run_bounded(cmd, INVOKE_LIMIT);
        assert!(
            output.status.success(),
            "cargo lambda invoke {function} failed: {}\n{}\n--- emulator ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.logs().join("\n")
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{function} answered non-JSON {stdout:?}: {e}"))
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::kill(group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever ignored SIGTERM goes now.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// `cargo lambda` is a cargo subcommand: cargo finds it on PATH, so put the venv first.
fn path_with_cargo_lambda() -> std::ffi::OsString {
    let bin = cargo_lambda_bin();
    let mut paths: Vec<PathBuf> = bin.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).expect("PATH entries are joinable")
}
