//! The end-of-run summary on standard error, printed whatever happened (failures, Ctrl-C,
//! logs sent to a file): the counts, bytes and duration, what registries said of their rate
//! limits (pulls left, until when a spent budget lasts, 429s), then every rule that could not
//! be resolved and every image that failed, with the reason. Reasons come from the library,
//! which never puts credentials in them.

use std::io::{self, Write};
use std::time::Duration;

use ferry::plan::RuleFailure;
use ferry::report::{RegistryUsage, Report};
use indicatif::HumanBytes;

/// What the summary describes.
pub struct Summary<'a> {
    pub report: &'a Report,
    pub rule_failures: &'a [RuleFailure],
    /// Ctrl-C came before the rules were resolved: nothing was tried.
    pub interrupted_planning: bool,
}

impl Summary<'_> {
    pub fn print(&self) {
        // Standard error gone: nothing better to do than carry on to the exit status.
        let _ = self.write(&mut io::stderr().lock());
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let totals = &self.report.totals;
        writeln!(
            out,
            "ferry: {} {}: {} copied, {} skipped, {} failed; {} in {}",
            totals.images,
            if totals.images == 1 {
                "image"
            } else {
                "images"
            },
            totals.copied,
            totals.skipped,
            totals.failed,
            HumanBytes(totals.bytes),
            human_duration(Duration::from_millis(totals.duration_ms)),
        )?;
        if totals.referrers_copied > 0 {
            writeln!(
                out,
                "ferry: {} referrers (signatures, SBOMs, attestations) copied",
                totals.referrers_copied
            )?;
        }
        for image in &self.report.images {
            for problem in &image.referrer_problems {
                writeln!(out, "ferry: referrers of {}: {problem}", image.source)?;
            }
        }
        for registry in &self.report.registries {
            writeln!(out, "ferry: registry {}", describe_usage(registry))?;
        }
        if self.interrupted_planning {
            writeln!(out, "ferry: interrupted before the rules were resolved")?;
        }
        for failure in self.rule_failures {
            writeln!(out, "ferry: rule not resolved: {failure}")?;
        }
        for image in self.report.failures() {
            let reason = image.reason.as_deref().unwrap_or("unknown error");
            writeln!(out, "ferry: failed: {}: {reason}", image.source)?;
        }
        Ok(())
    }
}

/// `HOST: 12 of 100 pulls left (76 when the run began); …`: what a registry said of its
/// rate limits.
fn describe_usage(usage: &RegistryUsage) -> String {
    let mut facts = Vec::new();
    let left = match (usage.pulls_left, usage.pull_limit) {
        (Some(left), Some(limit)) => Some(format!("{left} of {limit} pulls left")),
        (Some(left), None) => Some(format!("{left} pulls left")),
        (None, Some(limit)) => Some(format!("a budget of {limit} pulls")),
        (None, None) => None,
    };
    if let Some(mut left) = left {
        if let Some(start) = usage
            .pulls_left_at_start
            .filter(|&s| Some(s) != usage.pulls_left)
        {
            left += &format!(" ({start} when the run began)");
        }
        facts.push(left);
    }
    if let Some(until) = &usage.spent_until {
        facts.push(format!("no pulls until {until}"));
    }
    if usage.too_many_requests > 0 {
        let n = usage.too_many_requests;
        let answers = if n == 1 { "answer" } else { "answers" };
        let mut throttled = format!("{n} {answers} 429 Too Many Requests");
        if let Some(lowest) = usage.lowest_in_flight {
            throttled += &format!(" (requests in flight lowered to {lowest})");
        }
        facts.push(throttled);
    }
    format!("{}: {}", usage.registry, facts.join("; "))
}

/// `850ms`, `4.2s`, `3m04s`, `1h02m09s`: short, and exact enough to compare runs.
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{}ms", duration.as_millis()),
        1..60 => format!("{:.1}s", duration.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!(
            "{}h{:02}m{:02}s",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        ),
    }
}

#[cfg(test)]
mod tests {
    use ferry::report::{ImageReport, Status};

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(human_duration(Duration::from_secs(184)), "3m04s");
        assert_eq!(human_duration(Duration::from_secs(3_729)), "1h02m09s");
    }

    #[test]
    fn rate_limits_as_registries_stated_them() {
        let spent = RegistryUsage {
            registry: "docker.io".into(),
            pull_limit: Some(100),
            pull_window_secs: Some(21600),
            pulls_left_at_start: Some(3),
            pulls_left: Some(0),
            spent_until: Some("2030-01-01T06:00:00Z".into()),
            too_many_requests: 2,
            lowest_in_flight: Some(4),
        };
        assert_eq!(
            describe_usage(&spent),
            "docker.io: 0 of 100 pulls left (3 when the run began); no pulls until \
             2030-01-01T06:00:00Z; 2 answers 429 Too Many Requests (requests in flight lowered to 4)"
        );
        let quiet = RegistryUsage {
            registry: "quay.io".into(),
            pulls_left_at_start: Some(7),
            pulls_left: Some(7),
            ..RegistryUsage::default()
        };
        assert_eq!(describe_usage(&quiet), "quay.io: 7 pulls left");
    }

    #[test]
    fn counts_then_failures() {
        let mut copied = ImageReport::new("s/a:1".into(), vec!["t/a:1".into()]);
        copied.status = Status::Copied;
        copied.bytes = 3 * 1024 * 1024;
        let mut failed = ImageReport::new("s/b:1".into(), vec!["t/b:1".into()]);
        failed.status = Status::Failed;
        failed.reason = Some("interrupted".into());
        let skipped = ImageReport::new("s/c:1".into(), vec!["t/c:1".into()]);
        let report = Report::new(vec![copied, failed, skipped], Duration::from_secs(65));
        let summary = Summary {
            report: &report,
            rule_failures: &[],
            interrupted_planning: false,
        };
        let mut out = Vec::new();
        summary.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ferry: 3 images: 1 copied, 1 skipped, 1 failed; 3.00 MiB in 1m05s\n\
             ferry: failed: s/b:1: interrupted\n"
        );
    }
}
