//! One blob into one target repository: `blob` shares a transfer already under way there,
//! `place` mounts from where the blob already is on the target registry, `blob_with_retries`
//! waits for a transfer permit and retries transient faults, and `transfer` HEADs the
//! target, then mounts or streams the blob GET → PUT through a `Verifier`. Which blobs an
//! image needs and when its manifests follow is the copier's (`mod`); permits and the
//! once-cells are the `scheduler`'s.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::scheduler::round_backoff;
use super::tree::BlobRef;
use super::verify::Verifier;
use super::{Copier, CopyError};
use crate::reference::Repository;
use crate::registry::{Actions, UploadStart};

/// Attempts at one blob transfer (each a fresh GET → PUT) on transient faults.
const BLOB_ATTEMPTS: u32 = 3;

/// How a blob reached a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlobOutcome {
    Copied(u64),
    Mounted,
    Existing,
}

impl Copier {
    /// One blob into `target`, transferred at most once at a time per target repository.
    pub(super) async fn blob(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
    ) -> Result<BlobOutcome, CopyError> {
        let (outcome, first) = self
            .scheduler
            .once_per_repository(target, &blob.digest, || self.place(source, target, blob))
            .await;
        match outcome {
            Ok(BlobOutcome::Copied(_)) if !first => Ok(BlobOutcome::Existing),
            other => other,
        }
    }

    /// Puts a blob into `target`. From a source on the same registry it is mounted (or
    /// copied when the registry declines). Otherwise the first placement of a digest on the
    /// target registry transfers it, and every later one, in another repository, mounts it
    /// from there: a base layer shared by many images crosses the network once.
    async fn place(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
    ) -> Result<BlobOutcome, CopyError> {
        if source.registry() == target.registry() {
            return self.blob_with_retries(source, target, blob, None).await;
        }
        let cell = self.scheduler.placement(target.registry(), &blob.digest);
        let mut transferred = None;
        let placed = cell
            .get_or_try_init(|| async {
                let outcome = self.blob_with_retries(source, target, blob, None).await;
                let placed = outcome
                    .as_ref()
                    .map(|_| target.clone())
                    .map_err(Clone::clone);
                transferred = Some(outcome);
                placed
            })
            .await;
        if let Some(outcome) = transferred {
            return outcome;
        }
        match placed {
            Ok(placed) if placed != target => {
                let placed = placed.clone();
                self.blob_with_retries(source, target, blob, Some(&placed))
                    .await
            }
            Ok(_) => Ok(BlobOutcome::Existing),
            Err(error) => Err(error),
        }
    }

    async fn blob_with_retries(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
        mount_from: Option<&Repository>,
    ) -> Result<BlobOutcome, CopyError> {
        let _permit = self.scheduler.transfer_permit(blob.size).await;
        let mut attempt = 1;
        loop {
            if self.is_stopped() {
                return Err(CopyError::Interrupted);
            }
            match self.transfer(source, target, blob, mount_from).await {
                Err(CopyError::Registry(e)) if e.kind.is_transient() && attempt < BLOB_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "blob transfer failed; retrying");
                    tokio::time::sleep(round_backoff(attempt) / 4).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// HEAD (unless the repository is known absent), then mount (from `mount_from`, or from
    /// the source on the same registry) or stream the blob.
    async fn transfer(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
        mount_from: Option<&Repository>,
    ) -> Result<BlobOutcome, CopyError> {
        let target_client = self.client(target.registry())?;
        if !self.known_absent(target).await
            && target_client
                .blob_head(target, &blob.digest, Actions::PullPush)
                .await?
                .is_some()
        {
            return Ok(BlobOutcome::Existing);
        }
        let same_registry = source.registry() == target.registry() && source != target;
        let mount = mount_from
            .or(same_registry.then_some(source))
            .map(|from| (&blob.digest, from));
        let session = match target_client.upload_start(target, mount).await? {
            UploadStart::Mounted => return Ok(BlobOutcome::Mounted),
            UploadStart::Session(session) => session,
        };
        let source_client = self.client(source.registry())?;
        let stream = source_client.blob_get(source, &blob.digest).await?;
        let expected_size = blob.size.or(stream.size);
        let started = Instant::now();
        let verifier = Arc::new(Mutex::new(Verifier::new(&blob.digest)));
        let progress = self.progress.clone();
        let tap = verifier.clone();
        let checked = stream
            .chunks
            .map_ok(move |chunk| {
                tap.lock().expect("verifier poisoned").update(&chunk);
                progress.bytes_transferred(chunk.len() as u64);
                chunk
            })
            .chain(stream::once({
                let verifier = verifier.clone();
                async move {
                    verifier
                        .lock()
                        .expect("verifier poisoned")
                        .finish(expected_size)
                }
            }))
            .try_filter(|chunk| futures::future::ready(!chunk.is_empty()))
            .boxed();
        let chunk_size = self.options.chunk_size.or(session.min_chunk);
        let result = match chunk_size {
            Some(size) => {
                target_client
                    .upload_chunked(target, session, &blob.digest, size, checked)
                    .await
            }
            None => {
                let body = reqwest::Body::wrap_stream(checked);
                target_client
                    .upload_put(target, session, &blob.digest, expected_size, body)
                    .await
            }
        };
        // A mismatch seen while streaming explains any upload error that followed it.
        let verifier = verifier.lock().expect("verifier poisoned");
        if let Some(mismatch) = &verifier.mismatch {
            return Err(CopyError::BlobMismatch {
                source_repo: source.clone(),
                digest: blob.digest.clone(),
                mismatch: mismatch.clone(),
            });
        }
        result?;
        tracing::debug!(
            digest = %blob.digest,
            bytes = verifier.bytes,
            chunks = verifier.chunks,
            ms = started.elapsed().as_millis() as u64,
            "blob copied"
        );
        Ok(BlobOutcome::Copied(verifier.bytes))
    }
}
