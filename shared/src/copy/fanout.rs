//! One source read for every target registry: a blob that several target registries need
//! is streamed once from the source and written to all of them at the same time
//! (`blob_everywhere`); the other repositories of each registry mount it from there, as
//! they would with one target registry (`blob`). Which blob goes where in an image is the
//! copier's (`mod`); a blob into one registry, `blob`'s; the placements claimed here, the
//! `scheduler`'s.
//!
//! A shared read claims, at once, the first placement of the digest on each registry not
//! yet placed or being placed, and then waits for nothing but the source, its targets and
//! one transfer permit, so it cannot wait on another read that waits on it. Each target
//! gets its own upload (a streamed PATCH, or PATCH chunks when asked for) fed through a
//! queue of `QUEUED_CHUNKS` chunks. The chunks are shared (reference-counted `Bytes`), so
//! memory is bounded by the longest queue: `QUEUED_CHUNKS` + 1 chunks of the source's
//! response (each one read of the connection, tens of KiB) for all the targets together,
//! plus, for a registry asking for chunks, its one chunk buffer as ever. A slow target
//! slows the read (its queue is full) but never makes it buffer more; one that stops
//! reading for the read timeout fails its upload. A target whose upload fails is dropped
//! from the read and, after it, transfers the blob on its own with its own retries; the
//! others go on. The digest is checked once, by the read: each upload is ended (and only
//! then committed, by its PUT `?digest=`) after the whole blob checked out, and ended with
//! an error otherwise, so no target commits a blob that is not the one named. A fault of
//! the source (an error, a cut-off or damaged body) fails the read for every target still
//! in it, and the read is tried again, as one transfer would be.

use bytes::Bytes;
use futures::future::join_all;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;

use super::blob::{is_worth_retrying, BlobOutcome, BLOB_ATTEMPTS};
use super::scheduler::PlacementGuard;
use super::tree::BlobRef;
use super::verify::Verifier;
use super::{Copier, CopyError};
use crate::reference::{Digest, Repository};
use crate::registry::{Actions, ErrorKind, RegistryError, UploadSession, UploadStart};

/// Chunks queued for each target of a shared read.
const QUEUED_CHUNKS: usize = 8;

/// What a shared read sends each target's upload.
#[derive(Clone)]
enum Piece {
    Data(Bytes),
    /// Every byte was sent and the blob checked out: the upload may commit.
    Verified,
    /// The blob is not coming whole: the upload must fail.
    Failed(RegistryError),
}

/// How one target of a shared read attempt ended.
enum TargetEnd {
    Done(BlobOutcome),
    /// Its own fault (its HEAD, its session, its upload): it goes on alone.
    OwnFault(CopyError),
    /// The source failed while this target was in the read: it is in the next one.
    SourceFault,
}

impl Copier {
    /// One blob into every repository of `targets` (distinct), their outcomes in the same
    /// order. Read once from the source for all the target registries this call can claim
    /// (two or more); otherwise each target goes its own way (`blob`).
    pub(super) async fn blob_everywhere(
        &self,
        source: &Repository,
        targets: &[&Repository],
        blob: &BlobRef,
    ) -> Vec<Result<BlobOutcome, CopyError>> {
        // The first repository of each registry other than the source's.
        let mut firsts: Vec<&Repository> = Vec::new();
        for target in targets {
            let registry = target.registry();
            if registry != source.registry() && firsts.iter().all(|f| f.registry() != registry) {
                firsts.push(target);
            }
        }
        let mut claimed: Vec<(&Repository, PlacementGuard)> = Vec::new();
        if firsts.len() > 1 {
            let registries: Vec<&str> = firsts.iter().map(|f| f.registry()).collect();
            let claims = self.scheduler.claim_placements(&registries, &blob.digest);
            claimed = firsts
                .into_iter()
                .zip(claims)
                .filter_map(|(first, claim)| claim.map(|guard| (first, guard)))
                .collect();
        }
        if claimed.len() < 2 {
            // Nothing to share: released, and taken again (or waited for) target by target.
            drop(claimed);
            return join_all(targets.iter().map(|t| self.blob(source, t, blob))).await;
        }
        let (shared, guards): (Vec<&Repository>, Vec<PlacementGuard>) = claimed.into_iter().unzip();
        let others: Vec<&Repository> = targets
            .iter()
            .copied()
            .filter(|t| !shared.contains(t))
            .collect();
        let (read, mounted) = futures::join!(
            self.shared_read(source, &shared, guards, blob),
            join_all(others.iter().map(|t| self.blob(source, t, blob)))
        );
        let mut outcomes: Vec<Option<Result<BlobOutcome, CopyError>>> =
            targets.iter().map(|_| None).collect();
        let ended = shared.iter().zip(read).chain(others.iter().zip(mounted));
        for (target, outcome) in ended {
            if let Some(i) = targets.iter().position(|t| t == target) {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Err(CopyError::Interrupted)))
            .collect()
    }

    /// The blob into `targets` (one per registry, whose placements `guards` hold) from one
    /// read, tried again on faults of the source; a target failing on its own transfers the
    /// blob alone afterwards. Each placement is resolved as its target ends.
    async fn shared_read(
        &self,
        source: &Repository,
        targets: &[&Repository],
        guards: Vec<PlacementGuard>,
        blob: &BlobRef,
    ) -> Vec<Result<BlobOutcome, CopyError>> {
        let mut ends: Vec<Option<Result<BlobOutcome, CopyError>>> =
            targets.iter().map(|_| None).collect();
        let mut alone = Vec::new();
        {
            let _permit = self.scheduler.transfer_permit(blob.size).await;
            let policy = self.registries.options().retry;
            let mut pending: Vec<usize> = (0..targets.len()).collect();
            let mut attempt = 1;
            // Bounded by BLOB_ATTEMPTS: each turn ends targets or counts an attempt.
            while !pending.is_empty() {
                if self.is_stopped() {
                    for i in pending.drain(..) {
                        ends[i] = Some(Err(CopyError::Interrupted));
                    }
                    break;
                }
                let these: Vec<&Repository> = pending.iter().map(|&i| targets[i]).collect();
                let (source_result, target_ends) = self.shared_attempt(source, &these, blob).await;
                let mut again = Vec::new();
                for (&i, end) in pending.iter().zip(target_ends) {
                    match end {
                        TargetEnd::Done(outcome) => ends[i] = Some(Ok(outcome)),
                        TargetEnd::OwnFault(error) => {
                            tracing::debug!(%error, target = %targets[i], "target dropped from a shared blob read; it goes on alone");
                            alone.push(i);
                        }
                        TargetEnd::SourceFault => again.push(i),
                    }
                }
                pending = again;
                if let (Err(error), false) = (source_result, pending.is_empty()) {
                    if is_worth_retrying(&error) && attempt < BLOB_ATTEMPTS {
                        let delay = crate::backoff::jittered(
                            policy.base_delay,
                            attempt - 1,
                            policy.max_delay,
                        );
                        tracing::debug!(%error, attempt, ?delay, "shared blob read failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    } else {
                        for i in pending.drain(..) {
                            ends[i] = Some(Err(error.clone()));
                        }
                    }
                }
            }
        }
        // The permit is returned first: a transfer alone waits for its own.
        let retried = join_all(
            alone
                .iter()
                .map(|&i| self.blob_with_retries(source, targets[i], blob, None)),
        )
        .await;
        for (i, outcome) in alone.into_iter().zip(retried) {
            ends[i] = Some(outcome);
        }
        ends.into_iter()
            .zip(guards)
            .zip(targets)
            .map(|((end, guard), target)| {
                let end = end.unwrap_or(Err(CopyError::Interrupted));
                if end.is_ok() {
                    guard.placed(target);
                }
                end
            })
            .collect()
    }

    /// One attempt: each target HEADed (unless its repository is known absent) and given an
    /// upload session; then, if any needs the blob, one GET streamed to all of them. The
    /// result of the source's side, and how each target ended.
    async fn shared_attempt(
        &self,
        source: &Repository,
        targets: &[&Repository],
        blob: &BlobRef,
    ) -> (Result<(), CopyError>, Vec<TargetEnd>) {
        let opened = join_all(targets.iter().map(|t| self.open_upload(t, blob))).await;
        let mut ends = Vec::with_capacity(targets.len());
        let mut sessions = Vec::new();
        for (i, opened) in opened.into_iter().enumerate() {
            ends.push(match opened {
                Ok(None) => TargetEnd::Done(BlobOutcome::Existing),
                Ok(Some(session)) => {
                    sessions.push((i, session));
                    TargetEnd::SourceFault
                }
                Err(error) => TargetEnd::OwnFault(error),
            });
        }
        if sessions.is_empty() {
            return (Ok(()), ends);
        }
        let stream = match self.client(source.registry()) {
            Ok(client) => client.blob_get(source, &blob.digest).await,
            Err(error) => return (Err(error), ends),
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => return (Err(error.into()), ends),
        };
        let expected_size = blob.size.or(stream.size);
        let mut senders = Vec::new();
        let mut uploads = Vec::new();
        for (i, session) in sessions {
            let (sender, receiver) = mpsc::channel(QUEUED_CHUNKS);
            senders.push(sender);
            let upload = self.upload_from_read(targets[i], session, &blob.digest, receiver);
            uploads.push(async move { (i, upload.await) });
        }
        let read = self.distribute(source, stream.chunks, senders, blob, expected_size);
        let (read, uploaded) = futures::join!(read, join_all(uploads));
        let source_result = read.map(|bytes| {
            for (i, upload) in uploaded {
                ends[i] = match upload {
                    Ok(()) => TargetEnd::Done(BlobOutcome::Copied(bytes)),
                    Err(error) => TargetEnd::OwnFault(error),
                };
            }
        });
        (source_result, ends)
    }

    /// `None` when `target` has the blob already, else a session to upload it into.
    async fn open_upload(
        &self,
        target: &Repository,
        blob: &BlobRef,
    ) -> Result<Option<UploadSession>, CopyError> {
        let client = self.client(target.registry())?;
        if !self.known_absent(target).await
            && client
                .blob_head(target, &blob.digest, Actions::PullPush)
                .await?
                .is_some()
        {
            return Ok(None);
        }
        match client.upload_start(target, None).await? {
            UploadStart::Session(session) => Ok(Some(session)),
            UploadStart::Mounted => Ok(None),
        }
    }

    /// One target's upload, fed by the read through `pieces`.
    async fn upload_from_read(
        &self,
        target: &Repository,
        session: UploadSession,
        digest: &Digest,
        pieces: mpsc::Receiver<Piece>,
    ) -> Result<(), CopyError> {
        let client = self.client(target.registry())?;
        let data = upload_body(pieces);
        match self.options.chunk_size.or(session.min_chunk) {
            Some(size) => {
                client
                    .upload_chunked(target, session, digest, size, data)
                    .await?
            }
            None => {
                client
                    .upload_streamed(target, session, digest, data)
                    .await?
            }
        }
        Ok(())
    }

    /// Reads the source's `chunks` into every upload still listening, checking them as they
    /// pass; ends each upload with the verdict. The bytes read, or the source's fault.
    async fn distribute(
        &self,
        source: &Repository,
        mut chunks: BoxStream<'static, Result<Bytes, RegistryError>>,
        senders: Vec<mpsc::Sender<Piece>>,
        blob: &BlobRef,
        expected_size: Option<u64>,
    ) -> Result<u64, CopyError> {
        let mut verifier = Verifier::new(&blob.digest);
        let mut live = senders;
        // Bounded by the blob: each turn takes one chunk from the source.
        while let Some(item) = chunks.next().await {
            match item {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    verifier.update(&chunk);
                    self.progress
                        .bytes_transferred(chunk.len() as u64 * live.len() as u64);
                    live = send_to_all(live, Piece::Data(chunk)).await;
                    if live.is_empty() {
                        // Every target failed on its own; each goes on alone.
                        return Ok(verifier.bytes);
                    }
                }
                Err(error) => {
                    send_to_all(live, Piece::Failed(error.clone())).await;
                    return Err(error.into());
                }
            }
        }
        match verifier.finish(expected_size) {
            Ok(_) => {
                send_to_all(live, Piece::Verified).await;
                Ok(verifier.bytes)
            }
            Err(error) => {
                send_to_all(live, Piece::Failed(error.clone())).await;
                Err(match verifier.mismatch.clone() {
                    Some(mismatch) => CopyError::BlobMismatch {
                        source_repo: source.clone(),
                        digest: blob.digest.clone(),
                        mismatch,
                    },
                    None => error.into(),
                })
            }
        }
    }
}

/// `piece` to every sender, waiting for room in each queue; the senders whose upload is
/// still listening.
async fn send_to_all(live: Vec<mpsc::Sender<Piece>>, piece: Piece) -> Vec<mpsc::Sender<Piece>> {
    let sent = join_all(live.iter().map(|sender| sender.send(piece.clone()))).await;
    live.into_iter()
        .zip(sent)
        .filter(|(_, sent)| sent.is_ok())
        .map(|(sender, _)| sender)
        .collect()
}

/// An upload's body from the read's pieces: it ends only on `Verified`; a failure, or a
/// read that went away without a verdict, is an error, so the upload is never committed.
fn upload_body(pieces: mpsc::Receiver<Piece>) -> BoxStream<'static, Result<Bytes, RegistryError>> {
    stream::unfold(Some(pieces), |pieces| async move {
        let mut pieces = pieces?;
        match pieces.recv().await {
            Some(Piece::Data(chunk)) => Some((Ok(chunk), Some(pieces))),
            Some(Piece::Verified) => None,
            Some(Piece::Failed(error)) => Some((Err(error), None)),
            None => Some((
                Err(RegistryError::new(
                    "shared blob read",
                    ErrorKind::Transport("the read ended before the blob was verified".into()),
                )),
                None,
            )),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(pieces: Vec<Piece>) -> Vec<String> {
        let (sender, receiver) = mpsc::channel(QUEUED_CHUNKS);
        for piece in pieces {
            sender.send(piece).await.unwrap();
        }
        drop(sender);
        let mut stream = upload_body(receiver);
        let mut seen = Vec::new();
        // Bounded: a body ends at its verdict or at its first error.
        while let Some(item) = stream.next().await {
            seen.push(match item {
                Ok(chunk) => String::from_utf8_lossy(&chunk).into_owned(),
                Err(_) => "error".into(),
            });
            if seen.len() > 10 {
                break;
            }
        }
        seen
    }

    /// An upload of a shared read ends (and so commits) only on the read's verdict.
    #[tokio::test]
    async fn an_upload_body_ends_only_when_the_blob_checked_out() {
        let data = |s: &'static str| Piece::Data(Bytes::from_static(s.as_bytes()));
        assert_eq!(
            body(vec![data("a"), data("b"), Piece::Verified]).await,
            ["a", "b"]
        );
        let failed = Piece::Failed(RegistryError::new("t", ErrorKind::Protocol("bad".into())));
        assert_eq!(body(vec![data("a"), failed]).await, ["a", "error"]);
        // The read went away without a verdict.
        assert_eq!(body(vec![data("a")]).await, ["a", "error"]);
    }
}
