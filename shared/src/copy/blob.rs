//! One blob into one target repository: `blob` shares a transfer already under way there,
//! `place` mounts from where the blob already is on the target registry, `blob_with_retries`
//! waits for a transfer permit and retries transient faults (a blob that arrived cut off,
//! stalled or damaged included: the next GET may bring it whole), and `transfer` HEADs the
//! target, then mounts or streams the blob GET → PUT through a `Verifier`. Which blobs an
//! image needs and when its manifests follow is the copier's (`mod`); permits and the
//! once-cells are the `scheduler`'s.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::scheduler::Claim;
use super::tree::BlobRef;
use super::verify::Verifier;
use super::{Copier, CopyError};
use crate::reference::Repository;
use crate::registry::{Actions, RegistryError, UploadStart};

/// Attempts at one blob transfer (each a fresh GET → PUT) on transient faults. A link that
/// damages 30% of transfers still fails a blob only with odds of 0.3^8 ≈ 7e-5 per round;
/// the waits between attempts (the registry retry policy's, doubling) stay bounded.
pub(super) const BLOB_ATTEMPTS: u32 = 8;

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
        let placement = self.scheduler.placement(target.registry(), &blob.digest);
        match placement.claim().await {
            Claim::Mine(guard) => {
                let outcome = self.blob_with_retries(source, target, blob, None).await;
                if outcome.is_ok() {
                    guard.placed(target);
                }
                outcome
            }
            Claim::Placed(placed) if placed != *target => {
                self.blob_with_retries(source, target, blob, Some(&placed))
                    .await
            }
            // `claim` waits out `Busy`; it never answers it.
            Claim::Placed(_) | Claim::Busy => Ok(BlobOutcome::Existing),
        }
    }

    pub(super) async fn blob_with_retries(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &BlobRef,
        mount_from: Option<&Repository>,
    ) -> Result<BlobOutcome, CopyError> {
        let _permit = self.scheduler.transfer_permit(blob.size).await;
        let policy = self.registries.options().retry;
        let mut attempt = 1;
        loop {
            if self.is_stopped() {
                return Err(CopyError::Interrupted);
            }
            match self.transfer(source, target, blob, mount_from).await {
                Err(error) if is_worth_retrying(&error) && attempt < BLOB_ATTEMPTS => {
                    let delay =
                        crate::backoff::jittered(policy.base_delay, attempt - 1, policy.max_delay);
                    tracing::debug!(%error, attempt, ?delay, "blob transfer failed; retrying");
                    tokio::time::sleep(delay).await;
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
        let tapped = stream.chunks.map_ok(move |chunk| {
            tap.lock().expect("verifier poisoned").update(&chunk);
            progress.bytes_transferred(chunk.len() as u64);
            chunk
        });
        let checked = last_when_verified(tapped, verifier.clone(), expected_size);
        let chunk_size = self.options.chunk_size.or(session.min_chunk);
        let result = match chunk_size {
            Some(size) => {
                target_client
                    .upload_chunked(target, session, &blob.digest, size, checked)
                    .await
            }
            None => {
                target_client
                    .upload_put(target, session, &blob.digest, expected_size, checked)
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

/// `chunks` (already fed to `verifier`) held back by one: each chunk goes on only once the
/// next has arrived, and the last only once the whole blob checked out; else an error takes
/// its place. With a `Content-Length` the HTTP client ends the body at its last byte and
/// never asks for more, so a check after it would come too late: the registry would have
/// the whole wrong blob and commit it or (as distribution does) refuse it as a protocol
/// error. This way a blob that is not the one named never reaches the registry whole.
fn last_when_verified(
    chunks: impl futures::Stream<Item = Result<Bytes, RegistryError>> + Send + 'static,
    verifier: Arc<Mutex<Verifier>>,
    expected_size: Option<u64>,
) -> BoxStream<'static, Result<Bytes, RegistryError>> {
    let state = (chunks.boxed(), None::<Bytes>, false);
    stream::unfold(state, move |(mut chunks, mut held, ended)| {
        let verifier = verifier.clone();
        async move {
            if ended {
                return None;
            }
            // Bounded by the stream: each turn takes one chunk from it.
            loop {
                match chunks.next().await {
                    Some(Ok(chunk)) if chunk.is_empty() => {}
                    Some(Ok(chunk)) => {
                        if let Some(previous) = held.replace(chunk) {
                            return Some((Ok(previous), (chunks, held, false)));
                        }
                    }
                    Some(Err(error)) => return Some((Err(error), (chunks, None, true))),
                    None => {
                        let verdict = verifier
                            .lock()
                            .expect("verifier poisoned")
                            .finish(expected_size);
                        return match verdict {
                            Ok(_) => held.map(|last| (Ok(last), (chunks, None, true))),
                            Err(error) => Some((Err(error), (chunks, None, true))),
                        };
                    }
                }
            }
        }
    })
    .boxed()
}

/// Whether another transfer of the blob may succeed: a transient registry fault, or bytes
/// that did not match the digest (damaged on the way; a source that really holds other
/// bytes fails every attempt, and the image with it).
pub(super) fn is_worth_retrying(error: &CopyError) -> bool {
    match error {
        CopyError::Registry(e) => e.kind.is_transient(),
        CopyError::BlobMismatch { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Digest;

    async fn sent(chunks: &[&'static [u8]], digest: &Digest, size: Option<u64>) -> Vec<String> {
        let verifier = Arc::new(Mutex::new(Verifier::new(digest)));
        let tap = verifier.clone();
        let chunks: Vec<Result<Bytes, RegistryError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let tapped = stream::iter(chunks).map_ok(move |chunk| {
            tap.lock().unwrap().update(&chunk);
            chunk
        });
        last_when_verified(tapped, verifier, size)
            .map(|item| match item {
                Ok(chunk) => String::from_utf8_lossy(&chunk).into_owned(),
                Err(_) => "error".into(),
            })
            .collect()
            .await
    }

    /// Issue 12: with a `Content-Length`, the verifier's verdict after the last byte was
    /// never asked for, and a damaged blob reached the registry whole.
    #[tokio::test]
    async fn the_last_chunk_waits_for_the_verdict() {
        let digest = Digest::sha256(b"hello world");
        assert_eq!(
            sent(&[b"hello", b"", b" world"], &digest, Some(11)).await,
            ["hello", " world"]
        );
        assert_eq!(
            sent(&[b"hello", b" w0rld"], &digest, Some(11)).await,
            ["hello", "error"]
        );
        assert_eq!(sent(&[b"hello"], &digest, Some(11)).await, ["error"]);
        assert!(sent(&[], &Digest::sha256(b""), Some(0)).await.is_empty());
    }
}
