//! CloudWatch metrics in the Embedded Metric Format (EMF): a job's outcome and a plan's
//! summary each as one JSON log line that CloudWatch Logs also turns into metrics, so a
//! dashboard or an alarm needs no code. This file builds the lines; the Lambda functions
//! print them to standard output, one line each.
//!
//! The dimension set is fixed and bounded: the stack (`FERRY_STACK`) and the function's
//! role (`copier`, `planner`), never an image name, whose cardinality has no bound (and
//! every distinct dimension value is a metric billed on its own). Image names, digests and
//! reasons are plain properties of the line, searchable with Logs Insights.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::dispatch::DispatchSummary;
use crate::env::Env;
use crate::report::Status;
use crate::worker::Outcome;

/// The CloudWatch namespace of ferry's metrics.
pub const NAMESPACE: &str = "ferry";
/// The variable naming the stack, the value of the `Stack` dimension.
pub const STACK_VARIABLE: &str = "FERRY_STACK";
/// The `Stack` dimension's value when `FERRY_STACK` is unset.
const DEFAULT_STACK: &str = "ferry";
/// The dimension keys of every metric, in this one set.
pub const DIMENSIONS: [&str; 2] = ["Stack", "Function"];
/// CloudWatch refuses longer dimension values.
const MAX_DIMENSION_VALUE: usize = 250;

/// The copier's metrics: per job, 1 in the count of its outcome, its bytes and seconds.
pub const IMAGES_COPIED: &str = "ImagesCopied";
pub const IMAGES_SKIPPED: &str = "ImagesSkipped";
pub const IMAGES_FAILED: &str = "ImagesFailed";
pub const BYTES_COPIED: &str = "BytesCopied";
pub const COPY_SECONDS: &str = "CopySeconds";
/// The planner's metrics, per run.
pub const JOBS_ENQUEUED: &str = "JobsEnqueued";
pub const PLAN_JOBS_ENQUEUED: &str = "PlanJobsEnqueued";
pub const IMAGES_IN_SYNC: &str = "ImagesInSync";
pub const TAGS_SEEN: &str = "TagsSeen";
pub const PLAN_ERRORS: &str = "PlanErrors";
pub const PLAN_SECONDS: &str = "PlanSeconds";

/// A metric's CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Who emits: the values of the dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSource {
    pub stack: String,
    /// The function's role, not its deployed name: `copier` or `planner`.
    pub function: &'static str,
}

impl MetricSource {
    /// The stack from `FERRY_STACK` (`ferry` when unset), for the function `function`.
    pub fn from_env(env: &dyn Env, function: &'static str) -> MetricSource {
        let stack = env
            .var(STACK_VARIABLE)
            .map(|s| {
                s.trim()
                    .chars()
                    .take(MAX_DIMENSION_VALUE)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_STACK.to_string());
        MetricSource { stack, function }
    }
}

/// Milliseconds since the epoch, the EMF timestamp.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One EMF line: `_aws` metadata declaring `metrics` under the fixed dimension set, the
/// dimension values and metric values as top-level members, then `properties`. Properties
/// never override a dimension or a metric.
fn emf_line(
    source: &MetricSource,
    timestamp_ms: u64,
    metrics: &[(&'static str, Unit, Value)],
    properties: Map<String, Value>,
) -> Value {
    let declared: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [DIMENSIONS],
                "Metrics": declared,
            }],
        }),
    );
    line.insert(DIMENSIONS[0].into(), source.stack.clone().into());
    line.insert(DIMENSIONS[1].into(), source.function.into());
    for (name, _, value) in metrics {
        line.insert((*name).into(), value.clone());
    }
    for (key, value) in properties {
        line.entry(key).or_insert(value);
    }
    Value::Object(line)
}

fn seconds(ms: u64) -> Value {
    json!(Duration::from_millis(ms).as_secs_f64())
}

/// The copier's line for one job: its outcome counted in `ImagesCopied`, `ImagesSkipped` or
/// `ImagesFailed`, `BytesCopied` and (when it ran) `CopySeconds`, with the message id,
/// source, targets, status and any failure as properties.
pub fn job_line(source: &MetricSource, outcome: &Outcome, timestamp_ms: u64) -> Value {
    let status = match (&outcome.report, &outcome.failure) {
        (_, Some(_)) => Status::Failed,
        (Some(report), None) => report.status,
        (None, None) => Status::Skipped,
    };
    let count = |wanted: Status| json!(u64::from(status == wanted));
    let mut metrics = vec![
        (IMAGES_COPIED, Unit::Count, count(Status::Copied)),
        (IMAGES_SKIPPED, Unit::Count, count(Status::Skipped)),
        (IMAGES_FAILED, Unit::Count, count(Status::Failed)),
        (
            BYTES_COPIED,
            Unit::Bytes,
            json!(outcome.report.as_ref().map_or(0, |r| r.bytes)),
        ),
    ];
    let mut properties = Map::new();
    let level = if status == Status::Failed {
        "WARN"
    } else {
        "INFO"
    };
    properties.insert("level".into(), level.into());
    properties.insert("message".into(), "job finished".into());
    properties.insert("message_id".into(), outcome.message_id.clone().into());
    properties.insert("status".into(), json!(status));
    if let Some(report) = &outcome.report {
        metrics.push((COPY_SECONDS, Unit::Seconds, seconds(report.duration_ms)));
        properties.insert("source".into(), report.source.clone().into());
        properties.insert("targets".into(), json!(report.targets));
        properties.insert("blobs_copied".into(), report.blobs_copied.into());
        properties.insert("blobs_mounted".into(), report.blobs_mounted.into());
        properties.insert("blobs_existing".into(), report.blobs_existing.into());
        properties.insert("manifests_pushed".into(), report.manifests_pushed.into());
        properties.insert("referrers_copied".into(), report.referrers_copied.into());
        properties.insert("duration_ms".into(), report.duration_ms.into());
    }
    if let Some(failure) = &outcome.failure {
        properties.insert("kind".into(), failure.kind.as_str().into());
        properties.insert("reason".into(), failure.message.clone().into());
    }
    emf_line(source, timestamp_ms, &metrics, properties)
}

/// The planner's line for one run (and the copier's for one plan job it expanded):
/// `JobsEnqueued` (copy jobs), `PlanJobsEnqueued`, `ImagesInSync`, `TagsSeen`,
/// `PlanErrors` and `PlanSeconds`, with the plan id and rule count as properties.
pub fn plan_line(
    source: &MetricSource,
    summary: &DispatchSummary,
    elapsed: Duration,
    timestamp_ms: u64,
) -> Value {
    let metrics = [
        (JOBS_ENQUEUED, Unit::Count, json!(summary.jobs_enqueued)),
        (
            PLAN_JOBS_ENQUEUED,
            Unit::Count,
            json!(summary.plan_jobs_enqueued),
        ),
        (IMAGES_IN_SYNC, Unit::Count, json!(summary.already_in_sync)),
        (TAGS_SEEN, Unit::Count, json!(summary.tags_seen)),
        (PLAN_ERRORS, Unit::Count, json!(summary.errors.len())),
        (PLAN_SECONDS, Unit::Seconds, json!(elapsed.as_secs_f64())),
    ];
    let mut properties = Map::new();
    let level = if summary.errors.is_empty() {
        "INFO"
    } else {
        "WARN"
    };
    properties.insert("level".into(), level.into());
    properties.insert("message".into(), "plan enqueued".into());
    properties.insert("plan_id".into(), summary.plan_id.clone().into());
    properties.insert("rules".into(), summary.rules.into());
    emf_line(source, timestamp_ms, &metrics, properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::error::Kind;
    use crate::report::{Failure, ImageReport};

    fn source() -> MetricSource {
        MetricSource::from_env(&MapEnv::new([(STACK_VARIABLE, "prod-ferry")]), "copier")
    }

    /// The line as printed: one line of JSON, which CloudWatch must accept as EMF. Returns
    /// the metric names it declares.
    fn check_emf(line: &Value, timestamp_ms: u64) -> Vec<String> {
        let text = serde_json::to_string(line).unwrap();
        assert!(!text.contains('\n'), "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], timestamp_ms);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        // The one fixed dimension set, with string values at the top level.
        assert_eq!(directive["Dimensions"], json!([["Stack", "Function"]]));
        for key in DIMENSIONS {
            assert!(line[key].is_string(), "{key} in {text}");
        }
        let mut names = Vec::new();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(
                ["Count", "Bytes", "Seconds"].contains(&metric["Unit"].as_str().unwrap()),
                "{metric}"
            );
            assert!(
                line[name].is_number(),
                "{name} has no numeric value in {text}"
            );
            names.push(name.to_string());
        }
        names
    }

    #[test]
    fn a_copied_job_is_one_line_of_valid_emf() {
        let mut report = ImageReport::new(
            "quay.io/team/app:v1".into(),
            vec!["registry.example.com/mirror/app:v1".into()],
        );
        report.status = Status::Copied;
        report.bytes = 1_048_576;
        report.duration_ms = 2_500;
        let outcome = Outcome {
            message_id: "m-1".into(),
            report: Some(report),
            failure: None,
            expansion: None,
        };
        let line = job_line(&source(), &outcome, 1_700_000_000_000);
        let names = check_emf(&line, 1_700_000_000_000);
        assert_eq!(
            names,
            [
                IMAGES_COPIED,
                IMAGES_SKIPPED,
                IMAGES_FAILED,
                BYTES_COPIED,
                COPY_SECONDS
            ]
        );
        assert_eq!(
            (&line["Stack"], &line["Function"]),
            (&json!("prod-ferry"), &json!("copier"))
        );
        assert_eq!(
            (
                &line[IMAGES_COPIED],
                &line[IMAGES_SKIPPED],
                &line[IMAGES_FAILED]
            ),
            (&json!(1), &json!(0), &json!(0))
        );
        assert_eq!(line[BYTES_COPIED], 1_048_576);
        assert_eq!(line[COPY_SECONDS], 2.5);
        // Image names are properties, never dimensions.
        assert_eq!(line["source"], "quay.io/team/app:v1");
        assert_eq!(line["status"], "copied");
        assert_eq!(line["level"], "INFO");
    }

    #[test]
    fn a_failed_message_counts_as_a_failed_image() {
        let outcome = Outcome {
            message_id: "m-2".into(),
            report: None,
            failure: Some(Failure {
                kind: Kind::BadInput,
                message: "job message is not JSON".into(),
            }),
            expansion: None,
        };
        let line = job_line(&source(), &outcome, 5);
        let names = check_emf(&line, 5);
        assert!(!names.contains(&COPY_SECONDS.to_string()), "nothing ran");
        assert_eq!(line[IMAGES_FAILED], 1);
        assert_eq!(line[IMAGES_COPIED], 0);
        assert_eq!(line["kind"], "bad_input");
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn a_plan_summary_is_one_line_of_valid_emf() {
        let summary = DispatchSummary {
            plan_id: "1-abc".into(),
            rules: 2,
            tags_seen: 30,
            jobs_enqueued: 12,
            plan_jobs_enqueued: 3,
            already_in_sync: 17,
            errors: vec![Failure {
                kind: Kind::NotFound,
                message: "no such repository".into(),
            }],
        };
        let planner = MetricSource::from_env(&MapEnv::default(), "planner");
        let line = plan_line(&planner, &summary, Duration::from_millis(1_250), 9);
        let names = check_emf(&line, 9);
        assert_eq!(
            names,
            [
                JOBS_ENQUEUED,
                PLAN_JOBS_ENQUEUED,
                IMAGES_IN_SYNC,
                TAGS_SEEN,
                PLAN_ERRORS,
                PLAN_SECONDS
            ]
        );
        assert_eq!(
            (&line["Stack"], &line["Function"]),
            (&json!("ferry"), &json!("planner"))
        );
        assert_eq!(line[JOBS_ENQUEUED], 12);
        assert_eq!(line[PLAN_JOBS_ENQUEUED], 3);
        assert_eq!(line[PLAN_ERRORS], 1);
        assert_eq!(line[PLAN_SECONDS], 1.25);
        assert_eq!(line["plan_id"], "1-abc");
    }

    #[test]
    fn properties_never_replace_dimensions_or_metrics() {
        let mut properties = Map::new();
        properties.insert("Stack".into(), "attacker".into());
        properties.insert("ImagesCopied".into(), "many".into());
        let line = emf_line(
            &source(),
            1,
            &[(IMAGES_COPIED, Unit::Count, json!(1))],
            properties,
        );
        assert_eq!(
            (&line["Stack"], &line[IMAGES_COPIED]),
            (&json!("prod-ferry"), &json!(1))
        );
    }

    #[test]
    fn the_stack_dimension_is_bounded() {
        let long = "s".repeat(5_000);
        let source =
            MetricSource::from_env(&MapEnv::new([(STACK_VARIABLE, long.as_str())]), "copier");
        assert_eq!(source.stack.len(), MAX_DIMENSION_VALUE);
        let blank = MetricSource::from_env(&MapEnv::new([(STACK_VARIABLE, "  ")]), "copier");
        assert_eq!(blank.stack, DEFAULT_STACK);
    }
}
