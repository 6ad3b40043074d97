//! Running the contenders as child processes and measuring them: wall time around the
//! process, CPU time from `wait4(2)`, peak RSS from GNU time (`/usr/bin/time -f %M`), and
//! the CPU the registries spent meanwhile (from `/proc/<pid>/stat`, [`Between`]). What a
//! contender is asked to do is `contenders.rs`'s and `planner.rs`'s.
//!
//! Why GNU time for the RSS: std spawns children with `posix_spawn` (a vfork), and on
//! `execve` Linux folds the hiwater RSS of the address space being left (this benchmark's
//! own, tens of MiB) into the child's `ru_maxrss`. GNU time is small and forks its child
//! for real, so the `%M` it reports is the copier's own peak.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use support::Registry;

use crate::counts::SideCounts;

/// One measured run of a child process.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
    /// Peak resident set size (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    pub exit: String,
    #[serde(skip)]
    pub success: bool,
}

impl Measured {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Run `cmd` (from [`clean_command`]) to completion under GNU time, with stdout and stderr
/// appended to `log`. Errors only when it cannot be started or measured.
pub fn run_measured(cmd: Command, log: &Path) -> anyhow::Result<Measured> {
    let rusage_file = log.with_extension("rusage");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rusage_file)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    let mut m = wait_measured(timed, log)?;
    let text = std::fs::read_to_string(&rusage_file).unwrap_or_default();
    // On a failure GNU time writes "Command exited with non-zero status N" first.
    m.max_rss_kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .ok_or_else(|| anyhow::anyhow!("no %M from /usr/bin/time in {}", rusage_file.display()))?;
    Ok(m)
}

/// Run `cmd` to completion with stdout and stderr appended to `log`; wall time and
/// `wait4` rusage (its `ru_maxrss` is not the child's own peak: see the module docs).
fn wait_measured(mut cmd: Command, log: &Path) -> anyhow::Result<Measured> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain wait4(2) on our own child with valid out-pointers; the `Child` is
    // never waited on through std afterwards.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            anyhow::bail!("wait4: {err}");
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    drop(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (success, exit) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exit {code}"))
    } else {
        (false, format!("signal {}", libc::WTERMSIG(status)))
    };
    Ok(Measured {
        wall_s,
        user_s: tv(usage.ru_utime),
        sys_s: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        exit,
        success,
    })
}

/// The two registries a measured run copies between.
pub struct Between<'a> {
    pub source: &'a Registry,
    pub target: &'a Registry,
}

impl Between<'_> {
    /// Just before a measured run: write back what earlier runs left dirty (a copy writes
    /// gigabytes), so that writeback does not overlap the run, and count requests afresh.
    pub fn prepare(&self) {
        tokio::task::block_in_place(|| {
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() }
        });
        self.source.clear_requests();
        self.target.clear_requests();
    }

    /// CPU seconds both registry processes have used so far.
    pub fn cpu_s(&self) -> f64 {
        process_cpu_s(self.source.pid()) + process_cpu_s(self.target.pid())
    }

    /// The requests each answered since [`Between::prepare`].
    pub fn requests(&self) -> SideCounts {
        SideCounts::of(self.source, self.target)
    }
}

/// CPU seconds (user + system) a process has used so far; 0 if it is gone.
pub fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    (ticks(14 - 3) + ticks(15 - 3)) / hz
}

/// A command with a clean environment: only `PATH`, a fresh `HOME` (so neither ferry nor
/// skopeo sees anyone's credentials or Docker config) and `NO_COLOR`. The environment is
/// cleared, then only these are set: [`run_measured`] relies on that.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("NO_COLOR", "1");
    // RUST_LOG passes through, so ferry's debug lines (per-blob timings) can be studied.
    for name in ["TMPDIR", "RUST_LOG"] {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `ferry` next to this executable (`target*/release/ferry`), else from `PATH`.
pub fn default_ferry_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("ferry")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("ferry"))
}
