//! What the figures were measured on and how: the machine (CPU, memory, OS, kernel, the
//! versions of ferry, skopeo and the registry, ferry's commit) and the settings of the run
//! (runs, parallelism, auth, the command, the load before and after). Turning runs into
//! figures is `figures.rs`'s, rendering them `report.rs`'s.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub ferry: String,
    pub ferry_commit: String,
    pub skopeo: String,
    pub registry: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

impl Machine {
    pub fn probe(ferry: &Path, ferry_commit: Option<&str>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let commit = ferry_commit.map(String::from).unwrap_or_else(|| {
            let head = first_line("git", &["rev-parse", "--short", "HEAD"]);
            // Only what ferry is built from counts.
            let dirty = Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no", "--"])
                .args(["shared", "cli", "Cargo.toml", "Cargo.lock"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty());
            if dirty {
                format!("{head} + uncommitted changes")
            } else {
                head
            }
        });
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (mem_kib / 1048576.0 * 10.0).round() / 10.0,
            os,
            kernel,
            ferry: first_line(&ferry.display().to_string(), &["--version"]),
            ferry_commit: commit,
            skopeo: first_line("skopeo", &["--version"]),
            registry: first_line("docker-registry", &["--version"]),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} cores ({}), {} GiB RAM, {}, Linux {}; {}, {}, {} (commit {})",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.os,
            self.kernel,
            self.registry,
            self.skopeo,
            self.ferry,
            self.ferry_commit
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub runs: usize,
    pub proc: usize,
    pub quick: bool,
    pub auth: String,
    pub command: String,
    pub duration_s: f64,
    /// `/proc/loadavg` (1, 5, 15 min) when the benchmark started and ended: other work on
    /// the machine skews the figures.
    pub load_start: String,
    pub load_end: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
