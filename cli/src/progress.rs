//! What the user sees while images are copied. On a terminal: one indicatif bar (images
//! done/total, bytes, bytes/s, failures). Elsewhere, or when logs go to a file: one log line
//! per finished image, so a CI log or `--log FILE` still tells what happened to each.
//!
//! The bar owns the last line of the terminal; anything else written to standard error while
//! it is drawn (log lines, the Ctrl-C notice) must go through [`suspend`], or the two would
//! overwrite each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressState, ProgressStyle};
use shared::copy::Progress;
use shared::report::{ImageReport, Status};

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
    if let Some(bar) = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take() {
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
    /// The first call turns the spinner into the bar; later ones (a retry round announcing
    /// the images it tries again) leave the total alone, as those images are counted already.
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
    let rate = Arc::clone(counters);
    let failed = Arc::clone(counters);
    ProgressStyle::with_template(
        "{elapsed:>4} [{wide_bar}] {pos}/{len} images  {transferred}  {rate}{failed}",
    )
    .expect("static template")
    .progress_chars("=> ")
    .with_key(
        "transferred",
        move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", HumanBytes(bytes.bytes.load(Ordering::Relaxed)));
        },
    )
    .with_key(
        "rate",
        move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let seconds = state.elapsed().as_secs_f64().max(0.001);
            let per_second = rate.bytes.load(Ordering::Relaxed) as f64 / seconds;
            let _ = write!(w, "{}/s", HumanBytes(per_second as u64));
        },
    )
    .with_key(
        "failed",
        move |_: &ProgressState, w: &mut dyn std::fmt::Write| match failed
            .failed
            .load(Ordering::Relaxed)
        {
            0 => {}
            n => {
                let _ = write!(w, "  {n} failed");
            }
        },
    )
}

/// One line per finished image: source, status, bytes, and why when it failed or was skipped.
fn log_image(report: &ImageReport) {
    let source = &report.source;
    let bytes = HumanBytes(report.bytes);
    match (report.status, report.reason.as_deref()) {
        (Status::Failed, reason) => {
            let reason = reason.unwrap_or("unknown error");
            tracing::warn!(%source, status = "failed", %bytes, reason, "image finished");
        }
        (status, Some(reason)) => {
            let status = status_name(status);
            tracing::info!(%source, status, %bytes, reason, "image finished");
        }
        (status, None) => {
            let status = status_name(status);
            tracing::info!(%source, status, %bytes, "image finished");
        }
    }
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Copied => "copied",
        Status::Skipped => "skipped",
        Status::Failed => "failed",
    }
}
