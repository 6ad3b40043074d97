//! Log output: human-readable lines on standard error, or into `--log FILE` (as image-syncer
//! does). `RUST_LOG` filters; the default is `info` for ferry and `warn` for dependencies.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

use crate::progress;

/// Keeps logging alive for the run.
pub struct LogGuard;

pub fn init(file: Option<&Path>) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,ferry_core=info,ferry=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("cannot create log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_writer(StderrLine::default)
            .init(),
    }
    Ok(LogGuard)
}

/// One log event bound for standard error, written whole when dropped with the progress bar
/// hidden, so log lines and the bar never overdraw each other.
#[derive(Default)]
struct StderrLine(Vec<u8>);

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            // Nowhere left to report a failing standard error.
            let _ = progress::suspend(|| std::io::stderr().lock().write_all(&self.0));
        }
    }
}
