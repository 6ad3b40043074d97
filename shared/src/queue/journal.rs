//! A durable in-process queue: `MemoryQueue`'s delivery semantics, with every accepted job
//! written to a journal file (and synced to disk) before `send` returns, and every finished
//! one marked done. A process killed at any moment loses no accepted job: opening the journal
//! again queues every job not yet marked done. `ferry serve` uses it, so a push answered 202
//! is copied even across a SIGKILL. The journal is JSON lines, `{"add": id, "body": …}` and
//! `{"done": id}`, compacted to the jobs still pending each time it is opened.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Delivery, MemoryQueue, Queue, QueueError, SendSummary};

/// The journal's name in the state directory.
pub const JOURNAL_FILE: &str = "jobs.journal";

/// A journal line bigger than this is not a job ferry wrote; reading stops there.
const MAX_LINE: usize = 1 << 20;

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Add { add: String, body: String },
    Done { done: String },
}

/// The durable queue; see the module documentation.
#[derive(Debug)]
pub struct JournalQueue {
    inner: MemoryQueue,
    path: PathBuf,
    journal: Mutex<File>,
}

impl JournalQueue {
    /// Opens (or creates) the journal in `dir` and queues every job it has not seen done.
    pub async fn open(dir: &Path, visibility: Duration) -> Result<JournalQueue, QueueError> {
        let path = dir.join(JOURNAL_FILE);
        let journal_error = |operation: &'static str, error: std::io::Error| QueueError::Journal {
            path: path.clone(),
            operation,
            message: error.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| journal_error("create its directory", e))?;
        let pending = match File::open(&path) {
            Ok(file) => pending_jobs(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(journal_error("read", e)),
        };
        // Compacted: the pending jobs alone, written aside and renamed over the old journal,
        // so a crash while compacting leaves one journal or the other, never half of one.
        let fresh = path.with_extension("journal.new");
        {
            let mut file = File::create(&fresh).map_err(|e| journal_error("write", e))?;
            for (id, body) in &pending {
                write_record(
                    &mut file,
                    &Record::Add {
                        add: id.clone(),
                        body: body.clone(),
                    },
                )
                .map_err(|e| journal_error("write", e))?;
            }
            file.sync_all().map_err(|e| journal_error("sync", e))?;
        }
        std::fs::rename(&fresh, &path).map_err(|e| journal_error("replace", e))?;
        let journal = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| journal_error("open", e))?;
        let inner = MemoryQueue::new(visibility);
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), journal = %path.display(), "jobs from before a restart queued again");
        }
        inner
            .push(
                pending
                    .into_iter()
                    .map(|(id, body)| (Some(id), body))
                    .collect(),
            )
            .await;
        Ok(JournalQueue {
            inner,
            path,
            journal: Mutex::new(journal),
        })
    }

    /// Jobs not yet done, in flight or not.
    pub async fn len(&self) -> usize {
        self.inner.len().await
    }

    pub async fn is_empty(&self) -> bool {
        self.inner.is_empty().await
    }

    fn append(&self, records: &[Record], sync: bool) -> Result<(), QueueError> {
        let failed = |operation: &'static str, error: std::io::Error| QueueError::Journal {
            path: self.path.clone(),
            operation,
            message: error.to_string(),
        };
        let mut file = self.journal.lock().expect("journal lock poisoned");
        let mut text = Vec::new();
        for record in records {
            write_record(&mut text, record).map_err(|e| failed("write", e))?;
        }
        file.write_all(&text).map_err(|e| failed("write", e))?;
        if sync {
            file.sync_data().map_err(|e| failed("sync", e))?;
        }
        Ok(())
    }
}

fn write_record(out: &mut impl std::io::Write, record: &Record) -> std::io::Result<()> {
    // A record of strings always serialises.
    serde_json::to_writer(&mut *out, record).expect("a journal record serialises");
    out.write_all(b"\n")
}

/// The jobs a journal added and did not mark done, in the order added. A torn last line
/// (the process died mid-write) or a line that is not a record ends the reading there:
/// everything before it was synced, nothing after it can be trusted.
fn pending_jobs(file: File) -> Vec<(String, String)> {
    let mut order = Vec::new();
    let mut bodies = BTreeMap::new();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    // Bounded by the file's length.
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') => break,
            Ok(_) => {}
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(Record::Add { add, body }) => {
                if bodies.insert(add.clone(), body).is_none() {
                    order.push(add);
                }
            }
            Ok(Record::Done { done }) => {
                bodies.remove(&done);
            }
            Err(_) => break,
        }
    }
    order
        .into_iter()
        .filter_map(|id| bodies.remove(&id).map(|body| (id, body)))
        .collect()
}

/// A new job id, unique across restarts: the time and randomness.
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("j{nanos:x}-{:08x}", fastrand::u32(..))
}

#[async_trait]
impl Queue for JournalQueue {
    /// Returns once the jobs are on disk: an answer of "accepted" is then true.
    async fn send_bodies(&self, bodies: &[String]) -> Result<SendSummary, QueueError> {
        let messages: Vec<(String, String)> =
            bodies.iter().map(|body| (new_id(), body.clone())).collect();
        let records: Vec<Record> = messages
            .iter()
            .map(|(id, body)| Record::Add {
                add: id.clone(),
                body: body.clone(),
            })
            .collect();
        self.append(&records, true)?;
        self.inner
            .push(
                messages
                    .into_iter()
                    .map(|(id, body)| (Some(id), body))
                    .collect(),
            )
            .await;
        Ok(SendSummary { sent: bodies.len() })
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(max, wait).await
    }

    /// A lost "done" only means the job runs again after a restart, which is harmless (the
    /// copier skips what is in sync), so it is not synced.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        if let Some(id) = self.inner.remove(receipt).await {
            self.append(&[Record::Done { done: id }], false)?;
        }
        Ok(())
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.extend_visibility(receipt, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::jobs;
    use super::*;

    /// Issue 12, row 14: jobs accepted by `ferry serve` were lost with the process.
    #[tokio::test]
    async fn accepted_jobs_survive_a_restart_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let queue = JournalQueue::open(dir.path(), Duration::from_secs(60))
            .await
            .unwrap();
        queue.send(&jobs(3)).await.unwrap();
        let got = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 3);
        queue.delete(&got[1].receipt).await.unwrap();
        // Killed here: two jobs were never done, one in flight.
        drop(queue);
        let again = JournalQueue::open(dir.path(), Duration::from_secs(60))
            .await
            .unwrap();
        let bodies: Vec<String> = again
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.body)
            .collect();
        assert_eq!(bodies, [got[0].body.clone(), got[2].body.clone()]);
        // Compacted to what is pending.
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let queue = JournalQueue::open(dir.path(), Duration::from_secs(60))
            .await
            .unwrap();
        queue.send(&jobs(1)).await.unwrap();
        drop(queue);
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"add":"half","bo"#);
        std::fs::write(&path, text).unwrap();
        let again = JournalQueue::open(dir.path(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(again.len().await, 1);
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let error = JournalQueue::open(&file, Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not-a-dir"), "{error}");
    }
}
