//! The figures of the table: for each scenario, the medians over each contender's runs of
//! what the scenario is about (time, CPU, RSS, requests, bytes...), their ratios, and the
//! targets they are held to. Rendering them is `report.rs`'s.

use serde::Serialize;

use crate::planner::thousands;
use crate::purge::PURGE_EVERY;
use crate::{Run, ScenarioResult, Tool};

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

pub fn median_run(s: &ScenarioResult, tool: Tool) -> Option<&Run> {
    let mut runs: Vec<&Run> = s.runs_of(tool).collect();
    runs.sort_by(|a, b| a.measured.wall_s.total_cmp(&b.measured.wall_s));
    runs.get(runs.len().saturating_sub(1) / 2).copied()
}

pub fn figures_of(s: &ScenarioResult) -> Vec<Figure> {
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
        "warm_immutable" => {
            let tags = s.tags as f64;
            let per_tag = Figure::new(
                "warm_immutable_requests_per_tag",
                "warm, every tag immutable: requests per tag (all, tokens included)".into(),
                "req/tag",
            )
            .values(s, |r| r.requests.total() as f64 / tags);
            let met = ok_le(per_tag.ferry, 0.05);
            vec![
                Figure::new("warm_immutable_wall", s.title.clone(), "s")
                    .values(s, |r| r.measured.wall_s)
                    .note("against the warm row above".into()),
                per_tag.target("≤ 0.05", met),
            ]
        }
        "warm_no_referrers" => {
            let tags = s.tags as f64;
            vec![
                Figure::new("warm_no_referrers_wall", s.title.clone(), "s")
                    .values(s, |r| r.measured.wall_s)
                    .note("against the warm row above".into()),
                Figure::new(
                    "warm_no_referrers_requests_per_tag",
                    "warm, referrers off: requests per tag (all, tokens included)".into(),
                    "req/tag",
                )
                .values(s, |r| r.requests.total() as f64 / tags)
                .note("the warm row above has referrers on".into()),
            ]
        }
        "cold_c1_3_targets" => {
            // ferry into three target registries, and into one in the same rounds.
            let of = |targets: f64, f: &dyn Fn(&Run) -> f64| {
                median(
                    s.runs_of(Tool::Ferry)
                        .filter(|r| r.extra.get("target_registries") == Some(&targets))
                        .map(f)
                        .collect(),
                )
            };
            let figure = |id: &str, name: String, unit: &str, f: &dyn Fn(&Run) -> f64| {
                let mut figure = Figure::new(id, name, unit);
                figure.ferry = of(3.0, f);
                match of(1.0, f) {
                    Some(one) => figure.note(format!("into one target: {one:.2}")),
                    None => figure,
                }
            };
            let read = |r: &Run| {
                r.extra
                    .get("source_read_ratio")
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            let ratio = figure(
                "cold_c1_3_targets_source_read",
                "C1 into 3 targets: blob bytes read from source ÷ unique bytes".into(),
                "×",
                &read,
            );
            let met = ratio.ferry.map(|v| v <= 1.0 + 1e-9);
            vec![
                figure("cold_c1_3_targets_wall", s.title.clone(), "s", &|r| {
                    r.measured.wall_s
                }),
                ratio.target("1.00", met),
                figure(
                    "cold_c1_3_targets_rss",
                    "C1 into 3 targets: copier peak RSS".into(),
                    "MiB",
                    &|r| mib(r.measured.max_rss_kib),
                ),
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
        id @ ("planner_fanout_cold" | "planner_fanout_warm") => {
            let kind = if id.ends_with("cold") { "cold" } else { "warm" };
            let tags = s.tags as f64;
            let row = |name: &str, title: String, unit: &str, key: &str| {
                Figure::new(&format!("{id}_{name}"), title, unit).extra(s, key)
            };
            vec![
                row(
                    "wall",
                    format!("{}: wall time, planner then every plan job expanded at once", s.title),
                    "s",
                    "total_s",
                ),
                Figure::new(
                    &format!("{id}_planner_wall"),
                    format!("planner fanned out, {kind}: `ferry plan --fan-out` alone (listing, slicing, sending)"),
                    "s",
                )
                .values(s, |r| r.measured.wall_s),
                row(
                    "expand",
                    format!("planner fanned out, {kind}: expanding the plan jobs (ferry's copier code, in ferry-bench)"),
                    "s",
                    "expand_s",
                ),
                row(
                    "plan_jobs",
                    format!("planner fanned out, {kind}: plan jobs sent"),
                    "jobs",
                    "plan_jobs",
                ),
                row(
                    "copy_jobs",
                    format!("planner fanned out, {kind}: copy jobs sent"),
                    "jobs",
                    "copy_jobs",
                ),
                Figure::new(
                    &format!("{id}_requests_per_tag"),
                    format!("planner fanned out, {kind}: requests per tag (both registries, tokens included)"),
                    "req/tag",
                )
                .values(s, |r| r.requests.total() as f64 / tags),
            ]
        }
        _ => Vec::new(),
    }
}
