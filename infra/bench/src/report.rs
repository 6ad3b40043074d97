//! Figures from the runs (medians), the machine they ran on, and the three renderings: a
//! plain-text table, Markdown, and JSON (which also keeps every run and the request counts).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::counts::SideCounts;
use crate::planner::{thousands, PURGE_EVERY, VERIFY_TAGS};
use crate::{Run, ScenarioResult, Tool};

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

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub ferry: Option<f64>,
    pub skopeo: Option<f64>,
    pub floor: Option<f64>,
    pub ferry_vs_skopeo: Option<f64>,
    pub ferry_vs_floor: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
    /// Why a value is missing, or what it means.
    pub note: Option<String>,
}

impl Figure {
    fn new(id: &str, name: String, unit: &str) -> Figure {
        Figure {
            id: id.into(),
            name,
            unit: unit.into(),
            ferry: None,
            skopeo: None,
            floor: None,
            ferry_vs_skopeo: None,
            ferry_vs_floor: None,
            target: None,
            met: None,
            note: None,
        }
    }

    /// Medians of `f` over each tool's runs, and the ratios.
    fn values(mut self, s: &ScenarioResult, f: impl Fn(&Run) -> f64) -> Figure {
        let med = |tool| median(s.runs_of(tool).map(&f).collect());
        self.ferry = med(Tool::Ferry);
        self.skopeo = med(Tool::Skopeo);
        self.floor = med(Tool::Floor);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        self.ferry_vs_skopeo = ratio(self.ferry, self.skopeo);
        self.ferry_vs_floor = ratio(self.ferry, self.floor);
        self
    }

    fn target(mut self, text: &str, met: Option<bool>) -> Figure {
        self.target = Some(text.into());
        self.met = met;
        self
    }

    fn note(mut self, text: String) -> Figure {
        self.note = Some(text);
        self
    }

    /// ferry's median of a scenario figure of its own (`Run::extra`), where runs have it.
    fn extra(mut self, s: &ScenarioResult, key: &str) -> Figure {
        self.ferry = median(
            s.runs_of(Tool::Ferry)
                .filter_map(|r| r.extra.get(key).copied())
                .collect(),
        );
        self
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// What one request costs a registry on this machine.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub mode: String,
    pub requests: usize,
    pub wall_s: f64,
    pub requests_per_s: f64,
    pub registry_cpu_ms_per_request: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    /// HEAD manifest against one registry per mode, 8 at a time, keep-alive.
    pub calibration: Vec<Calibration>,
    pub figures: Vec<Figure>,
    /// Scenario → tool → requests of that tool's median-time run, per side.
    pub requests: BTreeMap<String, BTreeMap<String, SideCounts>>,
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    pub fn new(
        machine: Machine,
        settings: Settings,
        calibration: Vec<Calibration>,
        scenarios: Vec<ScenarioResult>,
    ) -> Report {
        let mut figures = Vec::new();
        let mut requests = BTreeMap::new();
        for s in &scenarios {
            figures.extend(figures_of(s));
            let mut per_tool = BTreeMap::new();
            for tool in [Tool::Ferry, Tool::Skopeo, Tool::Floor, Tool::FloorH2] {
                if let Some(run) = median_run(s, tool) {
                    per_tool.insert(tool.name().to_string(), run.requests.clone());
                }
            }
            requests.insert(s.id.clone(), per_tool);
        }
        Report {
            machine,
            settings,
            calibration,
            figures,
            requests,
            scenarios,
        }
    }

    fn rows(&self) -> Vec<[String; 7]> {
        let mut rows = vec![[
            "figure".to_string(),
            "ferry".into(),
            "skopeo".into(),
            "floor".into(),
            "ferry/skopeo".into(),
            "ferry/floor".into(),
            "target".into(),
        ]];
        // Rows of contenders that were not run (--tools, --only) are left out.
        let shown = self.figures.iter().filter(|f| {
            f.ferry.is_some() || f.skopeo.is_some() || f.floor.is_some() || f.note.is_some()
        });
        for f in shown {
            let v = |x: Option<f64>| x.map_or("–".to_string(), |x| fmt_value(x, &f.unit));
            let r = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.2}×"));
            let mut target = f.target.clone().unwrap_or_default();
            match f.met {
                Some(true) => target += " ✓",
                Some(false) => target += " ✗",
                None => {}
            }
            if let Some(note) = &f.note {
                if target.is_empty() {
                    target = note.clone();
                } else {
                    target = format!("{target}; {note}");
                }
            }
            rows.push([
                format!("{} ({})", f.name, f.unit),
                v(f.ferry),
                v(f.skopeo),
                v(f.floor),
                r(f.ferry_vs_skopeo),
                r(f.ferry_vs_floor),
                target,
            ]);
        }
        rows
    }

    pub fn text_table(&self) -> String {
        let rows = self.rows();
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..7).map(width).collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 || i == 6 {
                    line += cell;
                    line += &" ".repeat(pad);
                } else {
                    line += &" ".repeat(pad);
                    line += cell;
                }
                line += "  ";
            }
            out += line.trim_end();
            out += "\n";
            if n == 0 {
                out += &"-".repeat(widths.iter().sum::<usize>() + 12);
                out += "\n";
            }
        }
        out += &format!("\nmachine: {}\n", self.machine.summary());
        out += &format!(
            "{} run(s) per figure, medians; ferry --proc {}; registries: docker-registry over TLS ({} auth); load average {} at start, {} at end; {:.0} s in all\n",
            self.settings.runs,
            self.settings.proc,
            self.settings.auth,
            self.settings.load_start,
            self.settings.load_end,
            self.settings.duration_s
        );
        for note in self.notes() {
            out += &format!("{note}\n");
        }
        out += &self.requests_text();
        out
    }

    /// What the figures of some scenarios need said beside the table.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let cold = self.scenarios.iter().find(|s| s.id == "planner_cold");
        let warm = self.scenarios.iter().find(|s| s.id == "planner_warm");
        if let (Some(cold), Some(warm)) = (cold, warm) {
            let n = thousands(cold.tags);
            let extra = |key: &str| {
                median(
                    cold.runs_of(Tool::Ferry)
                        .filter_map(|r| r.extra.get(key).copied())
                        .collect(),
                )
            };
            let purges = extra("purges").map_or("–".into(), |p| format!("{p:.0}"));
            let moto = extra("moto_cpu_s").map_or("–".into(), |c| format!("{c:.1} s"));
            let enqueue = extra("enqueue_s").map_or("–".into(), |c| format!("{c:.1} s"));
            notes.push(format!(
                "planner: `ferry plan --queue-url` (the planner Lambda's code: list the tags, HEAD \
                 every target and, where a target has the tag, the source, 32 in flight; one job \
                 per image not in sync, sent while checking goes on, 10 per SendMessageBatch \
                 call, 8 calls in flight) on one repository of {n} tags of one \
                 small image, from the source registry to a second registry in the same mode (empty \
                 for cold plans; for warm plans seeded with the same manifests and blobs), into \
                 moto_server as SQS. Runs: {} cold, {} warm.",
                cold.runs.len(),
                warm.runs.len()
            ));
            notes.push(format!(
                "planner: moto 5.2.5's SendMessage/SendMessageBatch cost grows with the queue's \
                 length (every send scans every queued message), so {n} jobs into one moto queue \
                 would measure moto; during cold plans ferry-bench purges the queue every {} ms \
                 ({purges} purges per run, median), keeping it short. moto still used {moto} CPU \
                 per cold plan on the same cores (median; sending after the last check took \
                 {enqueue}). \
                 Real SQS was not measured.",
                PURGE_EVERY.as_millis()
            ));
            notes.push(format!(
                "planner: checked, not assumed: a {VERIFY_TAGS}-tag plan (a regex rule), not \
                 purged, was received in full, every message a valid job for one of those tags \
                 (with no digest, as no target had it, or the source's), each tag exactly once; every cold plan reported {n} jobs \
                 enqueued, every warm plan 0 (all {n} in sync, queue left empty), none with errors."
            ));
        }
        notes
    }

    pub fn markdown(&self) -> String {
        let rows = self.rows();
        let mut out = String::new();
        out += &format!(
            "Machine: {}.\n\n{} run(s) per figure, medians; ferry `--proc {}`, the floor the same \
             parallelism, skopeo sync has no parallelism flag (it copies one image at a time, up \
             to 6 layers at once). Registries: distribution 2.8 over TLS with a test CA, {} auth. \
             Load average {} at start, {} at end. Command: `{}`.\n\n",
            self.machine.summary(),
            self.settings.runs,
            self.settings.proc,
            self.settings.auth,
            self.settings.load_start,
            self.settings.load_end,
            self.settings.command
        );
        for (n, row) in rows.iter().enumerate() {
            out += "| ";
            out += &row.join(" | ");
            out += " |\n";
            if n == 0 {
                out += "| --- | ---: | ---: | ---: | ---: | ---: | --- |\n";
            }
        }
        for note in self.notes() {
            out += &format!("\n{note}\n");
        }
        out += "\n```\n";
        out += &self.requests_text();
        out += "```\n";
        out
    }

    /// Request counts by method and endpoint, per scenario and tool (median-time run), and
    /// the calibration.
    fn requests_text(&self) -> String {
        let mut out = String::new();
        if !self.calibration.is_empty() {
            out += "\nregistry cost per request (HEAD manifest, 8 in flight, keep-alive):\n";
            for c in &self.calibration {
                out += &format!(
                    "  {:<10} {:>6.0} requests/s, {:.2} ms registry CPU per request\n",
                    c.mode, c.requests_per_s, c.registry_cpu_ms_per_request
                );
            }
        }
        out += "\nrequests (median-time run; source + target):\n";
        for (scenario, tools) in &self.requests {
            for (tool, c) in tools {
                let both = c.both();
                let kinds: Vec<String> = both
                    .by_kind
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                let statuses: Vec<String> = both
                    .by_status
                    .iter()
                    .filter(|(k, _)| k.as_str() >= "300")
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect();
                let protocols: Vec<String> = both
                    .by_protocol
                    .iter()
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect();
                out += &format!(
                    "  {scenario:<8} {tool:<6} {:>6} total (source {}, target {}, token {}; {}): {}{}\n",
                    both.total + both.token_requests,
                    c.source.total,
                    c.target.total,
                    both.token_requests,
                    protocols.join(" "),
                    kinds.join(", "),
                    if statuses.is_empty() {
                        String::new()
                    } else {
                        format!("; non-2xx answers {}", statuses.join(" "))
                    }
                );
            }
        }
        out
    }
}

fn fmt_value(x: f64, unit: &str) -> String {
    match unit {
        "s" => format!("{x:.2}"),
        "MiB" => format!("{x:.1}"),
        "requests" | "GETs" => format!("{x:.0}"),
        _ => {
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        }
    }
}

fn median_run(s: &ScenarioResult, tool: Tool) -> Option<&Run> {
    let mut runs: Vec<&Run> = s.runs_of(tool).collect();
    runs.sort_by(|a, b| a.measured.wall_s.total_cmp(&b.measured.wall_s));
    runs.get(runs.len().saturating_sub(1) / 2).copied()
}

fn figures_of(s: &ScenarioResult) -> Vec<Figure> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ok_le = |v: Option<f64>, bound: f64| v.map(|v| v <= bound);
    match s.id.as_str() {
        "cold_c1" => {
            let wall =
                Figure::new("cold_c1_wall", s.title.clone(), "s").values(s, |r| r.measured.wall_s);
            // Two targets, each marked on its own.
            let mark = |ratio: Option<f64>, limit: f64| match ratio {
                Some(r) if r <= limit => " ✓",
                Some(_) => " ✗",
                None => "",
            };
            let targets = format!(
                "≤ 0.5× skopeo{}, ≤ 1.1× floor{}",
                mark(wall.ferry_vs_skopeo, 0.5),
                mark(wall.ferry_vs_floor, 1.1)
            );
            let placements = s.placements as f64;
            let mut h2 = Figure::new(
                "cold_c1_floor_h2_wall",
                "cold C1: the floor over HTTP/2 (one connection per registry)".into(),
                "s",
            );
            h2.floor = median(
                s.runs_of(Tool::FloorH2)
                    .map(|r| r.measured.wall_s)
                    .collect(),
            );
            if let (Some(f), Some(h)) = (wall.ferry, h2.floor) {
                h2.ferry_vs_floor = Some(f / h);
            }
            vec![
                wall.target(&targets, None),
                h2,
                Figure::new("cold_c1_cpu", "cold C1: copier CPU, user+sys".into(), "s")
                    .values(s, |r| r.measured.cpu_s()),
                Figure::new(
                    "cold_c1_registry_cpu",
                    "cold C1: both registries' CPU".into(),
                    "s",
                )
                .values(s, |r| r.registry_cpu_s),
                Figure::new("cold_c1_rss", "cold C1: copier peak RSS".into(), "MiB")
                    .values(s, |r| mib(r.measured.max_rss_kib)),
                Figure::new(
                    "cold_c1_requests",
                    "cold C1: requests, both registries".into(),
                    "requests",
                )
                .values(s, |r| r.requests.total() as f64),
                Figure::new(
                    "cold_c1_requests_per_blob",
                    format!(
                        "cold C1: requests per blob placement ({} placements, {} unique)",
                        s.placements, s.unique_blobs
                    ),
                    "req/blob",
                )
                .values(s, |r| r.requests.total() as f64 / placements)
                .target("minimal", None),
                Figure::new(
                    "cold_c1_source_bytes",
                    "cold C1: blob bytes read from source ÷ unique bytes".into(),
                    "×",
                )
                .values(s, |r| {
                    r.requests.source.blob_bytes_served as f64 / s.unique_bytes as f64
                }),
            ]
        }
        "warm" => {
            let tags = s.tags as f64;
            let wall =
                Figure::new("warm_wall", s.title.clone(), "s").values(s, |r| r.measured.wall_s);
            let met = wall.ferry_vs_skopeo.map(|r| r <= 0.2);
            let gets = Figure::new("warm_manifest_gets", "warm: manifest GETs".into(), "GETs")
                .values(s, |r| {
                    r.requests.both().method_kind("GET", "manifest") as f64
                });
            let gets_met = gets.ferry.map(|v| v == 0.0);
            let heads = Figure::new(
                "warm_heads_per_tag",
                "warm: HEAD requests per tag".into(),
                "req/tag",
            )
            .values(s, |r| r.requests.both().method("HEAD") as f64 / tags);
            let heads_met = ok_le(heads.ferry, 2.0);
            vec![
                wall.target("≤ 0.2× skopeo", met),
                Figure::new(
                    "warm_requests_per_tag",
                    "warm: requests per tag (all, tokens included)".into(),
                    "req/tag",
                )
                .values(s, |r| r.requests.total() as f64 / tags),
                gets.target("0", gets_met),
                heads.target("≤ 2", heads_met),
                Figure::new("warm_cpu", "warm: copier CPU, user+sys".into(), "s")
                    .values(s, |r| r.measured.cpu_s()),
            ]
        }
        id if id.starts_with("big_") => {
            let rss = Figure::new(
                &format!("{id}_rss"),
                format!("{}: peak RSS", s.title),
                "MiB",
            )
            .values(s, |r| mib(r.measured.max_rss_kib));
            let rss = if id == "big_2g" {
                let met = ok_le(rss.ferry, 24.0);
                rss.target("≤ 24 MiB", met)
            } else {
                rss
            };
            vec![
                rss,
                Figure::new(
                    &format!("{id}_wall"),
                    format!("{}: wall time", s.title),
                    "s",
                )
                .values(s, |r| r.measured.wall_s),
            ]
        }
        id @ ("planner_cold" | "planner_warm") => {
            let cold = id == "planner_cold";
            let kind = if cold { "cold" } else { "warm" };
            let tags = s.tags as f64;
            let mut rows = vec![Figure::new(
                &format!("{id}_wall"),
                format!("{}: wall time", s.title),
                "s",
            )
            .values(s, |r| r.measured.wall_s)];
            let rate = if cold {
                Figure::new(
                    "planner_cold_rate",
                    format!(
                        "planner enqueue rate, {} tags into moto_server",
                        thousands(s.tags)
                    ),
                    "tags/s",
                )
                .note(format!(
                    "whole cold plan; queue purged every {} ms (notes)",
                    PURGE_EVERY.as_millis()
                ))
            } else {
                Figure::new(
                    "planner_warm_rate",
                    "planner, warm: tags checked per second".into(),
                    "tags/s",
                )
            };
            rows.push(rate.values(s, |r| tags / r.measured.wall_s));
            if cold {
                rows.push(
                    Figure::new(
                        "planner_cold_resolve",
                        "planner, cold: listing, HEADs and sending, until the last check (ferry's own timing)".into(),
                        "s",
                    )
                    .extra(s, "resolve_and_check_s"),
                );
                rows.push(
                    Figure::new(
                        "planner_cold_enqueue",
                        "planner, cold: sending what was left after the last check (ferry's own timing)".into(),
                        "s",
                    )
                    .extra(s, "enqueue_s"),
                );
            }
            rows.push(
                Figure::new(
                    &format!("{id}_requests_per_tag"),
                    format!("planner, {kind}: requests per tag (both registries, tokens included)"),
                    "req/tag",
                )
                .values(s, |r| r.requests.total() as f64 / tags),
            );
            rows.push(
                Figure::new(
                    &format!("{id}_cpu"),
                    format!("planner, {kind}: ferry CPU, user+sys"),
                    "s",
                )
                .values(s, |r| r.measured.cpu_s()),
            );
            rows.push(
                Figure::new(
                    &format!("{id}_rss"),
                    format!("planner, {kind}: ferry peak RSS"),
                    "MiB",
                )
                .values(s, |r| mib(r.measured.max_rss_kib)),
            );
            rows
        }
        _ => Vec::new(),
    }
}
