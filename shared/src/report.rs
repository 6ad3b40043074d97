//! What a run did, image by image: the JSON report (`--report`), the success list
//! (`--output-success-images`) and the totals the summary prints, and what the registries
//! said of their rate limits. Never holds credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::{HasKind, Kind};

/// A failure as reports, summaries and worker outcomes carry it: its kind, matchable, next to
/// the message people read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn of(error: &(impl HasKind + std::fmt::Display)) -> Failure {
        Failure {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// The outcome of one source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Something was pushed to at least one target.
    Copied,
    /// Nothing needed pushing (targets already in sync), or no platform matched the filter.
    Skipped,
    Failed,
}

/// One source image's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    pub source: String,
    pub targets: Vec<String>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What kind of failure `reason` describes; only for failed images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Blob bytes transferred (mounted and existing blobs not counted).
    pub bytes: u64,
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_existing: u64,
    pub manifests_pushed: u64,
    /// Referrers (signatures, SBOMs, attestations) pushed to a target, each once per target.
    pub referrers_copied: u64,
    /// What was wrong with the image's referrers (a fallback tag not an index, a loop, a
    /// referrer missing at the source): the image itself was still copied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrer_problems: Vec<String>,
    pub duration_ms: u64,
    /// Rounds this image took (1 unless `--retries` had to try it again).
    pub attempts: u32,
}

impl ImageReport {
    /// A report with nothing done yet.
    pub fn new(source: String, targets: Vec<String>) -> Self {
        ImageReport {
            source,
            targets,
            status: Status::Skipped,
            reason: None,
            kind: None,
            bytes: 0,
            blobs_copied: 0,
            blobs_mounted: 0,
            blobs_existing: 0,
            manifests_pushed: 0,
            referrers_copied: 0,
            referrer_problems: Vec::new(),
            duration_ms: 0,
            attempts: 1,
        }
    }

    /// Copied or already in sync: the targets hold the image.
    pub fn succeeded(&self) -> bool {
        self.status != Status::Failed
    }
}

/// Sums over a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub images: u64,
    pub copied: u64,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
    pub blobs_copied: u64,
    pub blobs_mounted: u64,
    pub blobs_existing: u64,
    pub manifests_pushed: u64,
    pub referrers_copied: u64,
    pub duration_ms: u64,
}

/// What one registry said of its rate limits during a run: its pull budget (as its
/// `ratelimit-*` or `x-ratelimit-*` headers stated it) and its 429 answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RegistryUsage {
    pub registry: String,
    /// Pulls allowed per window, as last stated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_window_secs: Option<u64>,
    /// Pulls left at the first answer that said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls_left_at_start: Option<u64>,
    /// Pulls left at the last answer that said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulls_left: Option<u64>,
    /// RFC 3339: no pulls are sent to it before then (set only while the budget is spent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_until: Option<String>,
    /// 429 Too Many Requests answers.
    pub too_many_requests: u64,
    /// The fewest requests in flight 429s lowered it to (only when they did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowest_in_flight: Option<usize>,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub images: Vec<ImageReport>,
    pub totals: Totals,
    /// Registries that stated a pull budget or answered 429, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<RegistryUsage>,
}

impl Report {
    pub fn new(mut images: Vec<ImageReport>, elapsed: Duration) -> Self {
        images.sort_by(|a, b| a.source.cmp(&b.source));
        let mut totals = Totals {
            duration_ms: elapsed.as_millis() as u64,
            ..Totals::default()
        };
        for image in &images {
            totals.images += 1;
            match image.status {
                Status::Copied => totals.copied += 1,
                Status::Skipped => totals.skipped += 1,
                Status::Failed => totals.failed += 1,
            }
            totals.bytes += image.bytes;
            totals.blobs_copied += image.blobs_copied;
            totals.blobs_mounted += image.blobs_mounted;
            totals.blobs_existing += image.blobs_existing;
            totals.manifests_pushed += image.manifests_pushed;
            totals.referrers_copied += image.referrers_copied;
        }
        Report {
            images,
            totals,
            registries: Vec::new(),
        }
    }

    /// With what the registries said of their rate limits.
    pub fn with_registries(mut self, mut registries: Vec<RegistryUsage>) -> Self {
        registries.sort_by(|a, b| a.registry.cmp(&b.registry));
        self.registries = registries;
        self
    }

    pub fn failures(&self) -> impl Iterator<Item = &ImageReport> {
        self.images.iter().filter(|i| i.status == Status::Failed)
    }

    /// source → targets for images now in their targets, in image-syncer's images-file shape.
    pub fn success_images(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for image in self.images.iter().filter(|i| i.succeeded()) {
            map.entry(image.source.clone())
                .or_default()
                .extend(image.targets.iter().cloned());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_success_list() {
        let mut a = ImageReport::new("s/a:1".into(), vec!["t/a:1".into()]);
        a.status = Status::Copied;
        a.bytes = 10;
        a.blobs_copied = 2;
        let mut b = ImageReport::new("s/b:1".into(), vec!["t/b:1".into()]);
        b.status = Status::Failed;
        b.reason = Some("boom".into());
        b.kind = Some(Kind::Transport);
        let c = ImageReport::new("s/c:1".into(), vec!["t/c:1".into(), "u/c:1".into()]);
        let report = Report::new(vec![b, c, a], Duration::from_millis(5));
        assert_eq!(report.totals.images, 3);
        assert_eq!(
            (
                report.totals.copied,
                report.totals.skipped,
                report.totals.failed
            ),
            (1, 1, 1)
        );
        assert_eq!(report.totals.bytes, 10);
        assert_eq!(report.images[0].source, "s/a:1");
        assert_eq!(report.success_images().len(), 2);
        assert_eq!(report.failures().count(), 1);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["images"][1]["status"], "failed");
        assert_eq!(json["images"][1]["reason"], "boom");
        assert_eq!(json["images"][1]["kind"], "transport");
        assert!(json["images"][0].get("kind").is_none());
        assert!(
            json.get("registries").is_none(),
            "absent when nothing was said"
        );
        let report = report.with_registries(vec![RegistryUsage {
            registry: "docker.io".into(),
            pull_limit: Some(100),
            pulls_left: Some(0),
            spent_until: Some("2030-01-01T00:00:00Z".into()),
            ..RegistryUsage::default()
        }]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["registries"][0],
            serde_json::json!({"registry": "docker.io", "pull_limit": 100, "pulls_left": 0,
                "spent_until": "2030-01-01T00:00:00Z", "too_many_requests": 0})
        );
    }
}
