//! The report: the calibration, the figures (`figures.rs`), the request counts of each
//! tool's median run and every run, for the machine and settings it ran with
//! (`machine.rs`), in three renderings: a plain-text table, Markdown, and JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::counts::SideCounts;
use crate::planner::{thousands, VERIFY_TAGS};
use crate::purge::PURGE_EVERY;
use crate::{ScenarioResult, Tool};

use crate::figures::{figures_of, median, median_run, Figure};
use crate::machine::{Machine, Settings};

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
        if let Some(fanned) = self
            .scenarios
            .iter()
            .find(|s| s.id == "planner_fanout_cold")
        {
            notes.push(format!(
                "planner fanned out: `ferry plan --queue-url --fan-out=N/10` (for 10,000 tags \
                 auto's 1,000) lists the {} tags and sends ten plan jobs of N/10 tags instead of \
                 checking them; ferry-bench then expands every plan job at once with the copier's code \
                 (`ferry::dispatch::expand`, 32 requests in flight each), as that many copier \
                 invocations would, its copy jobs sent to the same moto queue (purged as above). \
                 The wall time is the planner's plus the expansions'; requests count both. On \
                 this machine the registries share its cores with every expansion, so the \
                 parallelism Lambda gives is not measured; the point is that no invocation \
                 checks more than a slice. Checked: every plan job expanded, {} copy jobs \
                 (cold) or all in sync (warm), no errors.",
                thousands(fanned.tags),
                thousands(fanned.tags)
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
