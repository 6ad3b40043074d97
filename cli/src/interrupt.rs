//! Ctrl-C during `ferry sync`. The first stops the copier: no new image or blob is started,
//! transfers in flight finish or abort cleanly, and the run still ends with its summary and
//! report (unstarted images failed as "interrupted"). The second quits at once with 130, for
//! when a transfer in flight is too slow to wait for.

use std::sync::Arc;

use ferry::copy::Copier;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exit::INTERRUPTED;
use crate::progress;

/// Watches for Ctrl-C until dropped.
pub struct Interrupts {
    stopped: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// Starts watching; from now on Ctrl-C stops `copier` instead of killing the process.
pub fn watch(copier: Arc<Copier>) -> Interrupts {
    let (tx, stopped) = watch::channel(false);
    let task = tokio::spawn(handle(copier, tx));
    Interrupts { stopped, task }
}

impl Interrupts {
    /// Completes once the first Ctrl-C has stopped the copier; never if it does not come.
    pub async fn stopped(&mut self) {
        if self.stopped.wait_for(|stopped| *stopped).await.is_err() {
            // No signal handler could be installed: Ctrl-C keeps its default effect.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(copier: Arc<Copier>, stopped: watch::Sender<bool>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    progress::eprint_line(
        "ferry: interrupted: starting nothing new, finishing what is in flight \
         (Ctrl-C again to quit now)",
    );
    copier.stop();
    let _ = stopped.send(true);
    if tokio::signal::ctrl_c().await.is_ok() {
        progress::clear();
        eprintln!("ferry: interrupted");
        std::process::exit(INTERRUPTED);
    }
}

/// SIGTERM or Ctrl-C, each time one arrives (Ctrl-C only on Windows, which has no SIGTERM;
/// never, when no handler could be installed): how `serve` and `worker` are asked to stop.
pub struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub fn install() -> StopSignals {
        StopSignals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// Completes when the next signal arrives.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
