//! What the user sees while images are copied. On a terminal: one indicatif bar (images
//! done/total, bytes, bytes/s, failures). Elsewhere, or when logs go to a file: one log line
//! per finished image, so a CI log or `--log FILE` still tells what happened to each.
//!
//! The bar owns the last line of the terminal; anything else written to standard error while
//! it is drawn (log lines, the Ctrl-C notice) must go through [`suspend`], or the two would
//! overwrite each other.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::copy::Progress;
use ferry::report::{ImageReport, Status};
use indicatif::style::ProgressTracker;
use indicatif::{HumanBytes, ProgressBar, ProgressState, ProgressStyle};

/// The bar being drawn, if any. Global because the log writer (set up before the bar exists,
/// and living as long as the process) must find it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` with the bar hidden, so what `f` writes to standard error is not overdrawn.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Removes the bar from the terminal for good (quitting without a summary).
pub fn clear() {
    // Taken out first so the lock is not held while the terminal is written.
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// Prints one line on standard error without tearing the bar.
pub fn eprint_line(line: &str) {
    suspend(|| eprintln!("{line}"));
}

/// The CLI's [`Progress`]: drives the bar and/or logs each finished image.
pub struct CliProgress {
    bar: Option<ProgressBar>,
    log_each_image: bool,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    failed: AtomicU64,
}

impl CliProgress {
    /// `bar`: draw a bar (standard error is a terminal). `log_each_image`: log a line per
    /// finished image (no bar to show it, or logs go to a file that should have it).
    pub fn new(bar: bool, log_each_image: bool) -> Self {
        let counters = Arc::new(Counters::default());
        let bar = bar.then(start_spinner);
        if let Some(bar) = &bar {
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        }
        CliProgress {
            bar,
            log_each_image,
            counters,
        }
    }

    /// Removes the bar, leaving the terminal as it was, before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            clear();
            bar.finish_and_clear();
        }
    }
}

impl Drop for CliProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for CliProgress {
    /// The first call turns the spinner into the bar; any later one (a retry round announcing
    /// the images it tries again) leaves the total alone, as those images are counted already.
    fn planned(&self, images: usize) {
        let Some(bar) = &self.bar else { return };
        if bar.length().is_none() {
            bar.set_style(bar_style(&self.counters));
            bar.set_length(images as u64);
            // Rates count from the first copy, not from when planning started.
            bar.reset_elapsed();
        }
    }

    fn bytes_transferred(&self, n: u64) {
        // Only counted: the bar's steady tick redraws, so chunks cost no terminal writes.
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn image_finished(&self, report: &ImageReport) {
        if report.status == Status::Failed {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if self.log_each_image {
            log_image(report);
        }
    }
}

/// The bar shown while rules are resolved, before the number of images is known.
fn start_spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} resolving rules… {elapsed}")
        .expect("static template");
    bar.set_style(style);
    // The steady tick redraws the bar as bytes arrive; `bytes_transferred` never draws.
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn bar_style(counters: &Arc<Counters>) -> ProgressStyle {
    let bytes = Arc::clone(counters);
    let failed = Arc::clone(counters);
    ProgressStyle::with_template(
        "{elapsed:>4} [{wide_bar}] {pos}/{len} images  {transferred}  {rate}{failed}",
    )
    .expect("static template")
    .progress_chars("=> ")
    .with_key(
        "transferred",
        move |_: &ProgressState, w: &mut dyn Write| {
            let _ = write!(w, "{}", HumanBytes(bytes.bytes.load(Ordering::Relaxed)));
        },
    )
    .with_key("rate", Throughput::new(Arc::clone(counters)))
    .with_key("failed", move |_: &ProgressState, w: &mut dyn Write| {
        let n = failed.failed.load(Ordering::Relaxed);
        if n > 0 {
            let _ = write!(w, "  {n} failed");
        }
    })
}

/// Bytes per second lately (an exponentially weighted average over a few seconds), not
/// since the start: the bar should show what the network does now, and drop to zero while
/// only a retry's backoff is being waited out.
#[derive(Clone)]
struct Throughput {
    counters: Arc<Counters>,
    last: Option<(Instant, u64)>,
    per_second: Option<f64>,
}

impl Throughput {
    /// Seconds over which older samples fade to a third of their weight.
    const WINDOW: f64 = 3.0;
    /// Updates from `inc` come in bursts; samples closer together than this are noise.
    const MIN_SAMPLE: f64 = 0.1;

    fn new(counters: Arc<Counters>) -> Self {
        Throughput {
            counters,
            last: None,
            per_second: None,
        }
    }

    fn sample(&mut self, now: Instant, bytes: u64) {
        let Some((then, before)) = self.last else {
            self.last = Some((now, bytes));
            return;
        };
        let elapsed = now.saturating_duration_since(then).as_secs_f64();
        if elapsed < Self::MIN_SAMPLE {
            return;
        }
        let current = bytes.saturating_sub(before) as f64 / elapsed;
        let weight = 1.0 - (-elapsed / Self::WINDOW).exp();
        self.per_second = Some(match self.per_second {
            Some(average) => average + weight * (current - average),
            None => current,
        });
        self.last = Some((now, bytes));
    }
}

impl ProgressTracker for Throughput {
    fn clone_box(&self) -> Box<dyn ProgressTracker> {
        Box::new(self.clone())
    }

    fn tick(&mut self, _: &ProgressState, now: Instant) {
        self.sample(now, self.counters.bytes.load(Ordering::Relaxed));
    }

    fn reset(&mut self, _: &ProgressState, now: Instant) {
        self.last = Some((now, self.counters.bytes.load(Ordering::Relaxed)));
        self.per_second = None;
    }

    fn write(&self, _: &ProgressState, w: &mut dyn Write) {
        let per_second = self.per_second.unwrap_or(0.0) as u64;
        let _ = write!(w, "{}/s", HumanBytes(per_second));
    }
}

/// One line per finished image: source, status, bytes, and why when it failed or was skipped.
fn log_image(report: &ImageReport) {
    let source = &report.source;
    let status = status_name(report.status);
    let bytes = HumanBytes(report.bytes);
    match (report.status, report.reason.as_deref()) {
        (Status::Failed, reason) => {
            let reason = reason.unwrap_or("unknown error");
            tracing::warn!(%source, %status, %bytes, reason, "image finished");
        }
        (_, Some(reason)) => tracing::info!(%source, %status, %bytes, reason, "image finished"),
        (_, None) => tracing::info!(%source, %status, %bytes, "image finished"),
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Copied => "copied",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_follows_the_current_rate() {
        let mut rate = Throughput::new(Arc::default());
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        rate.sample(at(0), 0);
        assert_eq!(rate.per_second, None);
        rate.sample(at(1_000), 1_000);
        assert_eq!(rate.per_second, Some(1_000.0));
        // Too close to the last sample: ignored.
        rate.sample(at(1_050), 1_500);
        assert_eq!(rate.per_second, Some(1_000.0));
        rate.sample(at(2_000), 2_000);
        assert_eq!(rate.per_second, Some(1_000.0));
        // Idle for a long while: the rate falls towards zero instead of averaging the run.
        rate.sample(at(32_000), 2_000);
        let idle = rate.per_second.unwrap();
        assert!((0.0..10.0).contains(&idle), "{idle}");
    }
}
