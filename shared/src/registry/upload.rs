//! Blob uploads: POST to open a session (or mount from another repository of the same
//! registry), then one streaming PUT with `?digest=`, or PATCH chunks of bounded size when
//! the registry asks for them (`OCI-Chunk-Min-Length`) or the user configured a chunk size,
//! or one streaming PATCH and an empty PUT `?digest=` (a blob written to several registries
//! at once, committed only once its digest checked out).
//!
//! Upload bodies go through the client without a read timeout (reqwest's would also count
//! the time spent sending them), so each upload is watched here (`Watch`): one whose body
//! has not moved for the read timeout fails as a transient fault, and so does one whose
//! registry, once it has every byte, takes longer than `COMMIT_WAIT` to answer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode, Url};
use tokio::time::Instant;

use super::error::{status_error, ErrorKind, RegistryError};
use super::path::ApiPath;
use super::{Client, Scope};
use crate::reference::{Digest, Repository};

/// An open upload: where to send the data.
#[derive(Debug, Clone)]
pub struct UploadSession {
    location: Url,
    /// The smallest chunk the registry accepts, when it says so.
    pub min_chunk: Option<u64>,
}

/// What opening an upload gave.
#[derive(Debug)]
pub enum UploadStart {
    /// The blob was mounted from the other repository: nothing to send.
    Mounted,
    Session(UploadSession),
}

impl Client {
    /// Opens an upload in `repository`, asking to mount `digest` from `mount_from` when given.
    pub async fn upload_start(
        &self,
        repository: &Repository,
        mount: Option<(&Digest, &Repository)>,
    ) -> Result<UploadStart, RegistryError> {
        let context = format!("start upload to {repository}");
        self.prepare_push(repository, &context).await?;
        let uploads = ApiPath::in_repository(repository, &["blobs", "uploads", ""]);
        let (path, scope) = match mount {
            Some((digest, from)) => (
                uploads
                    .with("mount", digest.as_str())
                    .with("from", from.path()),
                Scope::push_mounting(repository, from),
            ),
            None => (uploads, Scope::push(repository)),
        };
        let response = self
            .send(&scope, &context, &path, |http, url| {
                http.post(url).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => Ok(UploadStart::Session(session(&response, &context)?)),
            _ => Err(status_error(response, &context).await),
        }
    }

    /// Sends the whole blob (`data`, `size` bytes when known) in one streaming PUT and
    /// closes the session.
    pub async fn upload_put(
        &self,
        repository: &Repository,
        session: UploadSession,
        digest: &Digest,
        size: Option<u64>,
        data: BoxStream<'static, Result<Bytes, RegistryError>>,
    ) -> Result<(), RegistryError> {
        let context = format!("upload {repository}@{digest}");
        let url = with_digest(session.location, digest);
        let watch = Watch::new(self.options.read_timeout);
        let body = watch.body(data);
        let scope = Scope::push(repository);
        let put = self.send_once(&scope, &context, url, |http, url| {
            let request = http
                .put(url)
                .header(CONTENT_TYPE, "application/octet-stream");
            match size {
                Some(n) => request.header(CONTENT_LENGTH, n),
                None => request,
            }
            .body(body)
        });
        let response = watch.run(put, &context).await?;
        expect_created(response, &context).await
    }

    /// Sends the whole blob in one PATCH whose body streams (no length: chunked transfer
    /// coding), then closes the session with an empty PUT `?digest=`. The registry commits
    /// nothing before that PUT, which is sent only once `data` has ended: a caller that ends
    /// `data` only when it knows the bytes are right (or with an error when they are not)
    /// decides whether the blob is committed after every byte was sent.
    pub async fn upload_streamed(
        &self,
        repository: &Repository,
        session: UploadSession,
        digest: &Digest,
        data: BoxStream<'static, Result<Bytes, RegistryError>>,
    ) -> Result<(), RegistryError> {
        let context = format!("streamed upload {repository}@{digest}");
        let scope = Scope::push(repository);
        let watch = Watch::new(self.options.read_timeout);
        let body = watch.body(data);
        let location = session.location;
        let patch = self.send_once(&scope, &context, location.clone(), |http, url| {
            http.patch(url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body)
        });
        let response = watch.run(patch, &context).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(response, &context).await);
        }
        let url = with_digest(session_url(&response, &location, &context)?, digest);
        watch.sent();
        let close = self.send_upload_to(&scope, &context, url, |http, url| {
            http.put(url).header(CONTENT_LENGTH, 0)
        });
        let response = watch.run(close, &context).await?;
        expect_created(response, &context).await
    }

    /// Sends the blob in PATCH chunks of `chunk_size` bytes (buffering at most one chunk),
    /// then closes the session with an empty PUT.
    pub async fn upload_chunked(
        &self,
        repository: &Repository,
        mut session: UploadSession,
        digest: &Digest,
        chunk_size: u64,
        mut data: BoxStream<'static, Result<Bytes, RegistryError>>,
    ) -> Result<(), RegistryError> {
        let context = format!("chunked upload {repository}@{digest}");
        let scope = Scope::push(repository);
        let watch = Watch::new(self.options.read_timeout);
        let chunk_size = chunk_size.max(session.min_chunk.unwrap_or(0)).max(1) as usize;
        let mut offset = 0u64;
        let mut buffer = BytesMut::with_capacity(chunk_size);
        let mut finished = false;
        // Bounded by the blob: each iteration sends one chunk or ends.
        while !finished {
            while buffer.len() < chunk_size {
                match data.next().await {
                    Some(chunk) => buffer.extend_from_slice(&chunk?),
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            let take = buffer.len().min(chunk_size);
            if take == 0 {
                break;
            }
            let chunk = buffer.split_to(take).freeze();
            let end = offset + chunk.len() as u64 - 1;
            let url = session.location.clone();
            let patch = self.send_upload_to(&scope, &context, url, |http, url| {
                http.patch(url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(watch.body(slices(chunk.clone())))
            });
            let response = watch.run(patch, &context).await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(status_error(response, &context).await);
            }
            session.location = session_url(&response, &session.location, &context)?;
            offset = end + 1;
            finished = finished && buffer.is_empty();
        }
        let url = with_digest(session.location, digest);
        watch.sent();
        let close = self.send_upload_to(&scope, &context, url, |http, url| {
            http.put(url).header(CONTENT_LENGTH, 0)
        });
        let response = watch.run(close, &context).await?;
        expect_created(response, &context).await
    }
}

/// How long a registry that has every byte of a blob may take to answer: committing a
/// large blob to object storage can take minutes, and nothing moves meanwhile.
const COMMIT_WAIT: Duration = Duration::from_secs(600);

/// The pieces a buffered PATCH chunk is sent in, so that its progress can be watched.
const SLICE: usize = 64 << 10;

/// The progress of one upload's body: when it last moved, and whether it was all sent.
#[derive(Clone)]
struct Watch {
    idle: Duration,
    state: Arc<Mutex<(Instant, bool)>>,
}

impl Watch {
    fn new(idle: Duration) -> Self {
        Watch {
            idle,
            state: Arc::new(Mutex::new((Instant::now(), false))),
        }
    }

    fn moved(&self) {
        *self.state.lock().expect("watch poisoned") = (Instant::now(), false);
    }

    fn sent(&self) {
        *self.state.lock().expect("watch poisoned") = (Instant::now(), true);
    }

    /// `data` as a request body that tells this watch each time a chunk is taken, and when
    /// the last one was.
    fn body(&self, data: BoxStream<'static, Result<Bytes, RegistryError>>) -> reqwest::Body {
        let (moved, sent) = (self.clone(), self.clone());
        self.moved();
        let watched = data
            .map(move |chunk| {
                moved.moved();
                Some(chunk)
            })
            .chain(stream::once(async move {
                sent.sent();
                None
            }))
            .filter_map(futures::future::ready);
        reqwest::Body::wrap_stream(watched)
    }

    /// `upload`, unless its body stops moving for the idle time, or the registry takes
    /// longer than `COMMIT_WAIT` to answer once it has all of it.
    async fn run<T>(
        &self,
        upload: impl Future<Output = Result<T, RegistryError>>,
        context: &str,
    ) -> Result<T, RegistryError> {
        tokio::select! {
            result = upload => result,
            waited = self.stalled() => Err(RegistryError::new(
                context,
                ErrorKind::Transport(format!("upload stalled: nothing moved for {} s", waited.as_secs())),
            )),
        }
    }

    /// Resolves (with the time waited) once the deadline has passed without the body
    /// moving. Each turn sleeps until the latest deadline, which moves only while data
    /// does.
    async fn stalled(&self) -> Duration {
        loop {
            let (last, sent) = *self.state.lock().expect("watch poisoned");
            let wait = if sent {
                COMMIT_WAIT.max(self.idle)
            } else {
                self.idle
            };
            if last.elapsed() >= wait {
                return wait;
            }
            tokio::time::sleep_until(last + wait).await;
        }
    }
}

/// A buffered chunk as a stream of `SLICE`-sized pieces (cheap: they share its memory).
fn slices(chunk: Bytes) -> BoxStream<'static, Result<Bytes, RegistryError>> {
    let starts = (0..chunk.len()).step_by(SLICE);
    stream::iter(starts.map(move |start| Ok(chunk.slice(start..(start + SLICE).min(chunk.len())))))
        .boxed()
}

/// The largest `OCI-Chunk-Min-Length` followed: a chunk is buffered whole, so a registry
/// asking for more (2^64-1, say) gets one streaming PUT instead, which the spec allows.
pub(crate) const MAX_MIN_CHUNK: u64 = 64 << 20;

fn session(response: &Response, context: &str) -> Result<UploadSession, RegistryError> {
    let min_chunk = response
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| min_chunk(v, context));
    Ok(UploadSession {
        location: session_url(response, response.url(), context)?,
        min_chunk,
    })
}

/// `OCI-Chunk-Min-Length` when it is a number ferry can follow.
fn min_chunk(value: &str, context: &str) -> Option<u64> {
    let bytes: u64 = value.trim().parse().ok()?;
    if bytes > MAX_MIN_CHUNK {
        tracing::warn!(
            context,
            bytes,
            "the registry asks for upload chunks larger than ferry buffers; sending one PUT"
        );
        return None;
    }
    Some(bytes)
}

/// The `Location` of an upload response, resolved against the request URL (it may be
/// relative).
fn session_url(response: &Response, base: &Url, context: &str) -> Result<Url, RegistryError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::new(
                context,
                ErrorKind::Protocol("upload response without Location".into()),
            )
        })?;
    base.join(location)
        .map_err(|e| RegistryError::new(context, ErrorKind::Protocol(format!("bad Location: {e}"))))
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

async fn expect_created(response: Response, context: &str) -> Result<(), RegistryError> {
    if response.status() == StatusCode::CREATED || response.status().is_success() {
        Ok(())
    } else {
        Err(status_error(response, context).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, row 6: an `OCI-Chunk-Min-Length` of 2^64-1 sized a buffer by it and
    /// panicked; any large value buffered whole blobs.
    #[test]
    fn chunk_minimums_beyond_the_buffer_are_not_followed() {
        assert_eq!(min_chunk("18446744073709551615", "c"), None);
        assert_eq!(min_chunk(&(MAX_MIN_CHUNK + 1).to_string(), "c"), None);
        assert_eq!(min_chunk(" 5242880 ", "c"), Some(5 << 20));
        assert_eq!(min_chunk("-1", "c"), None);
        assert_eq!(min_chunk("lots", "c"), None);
    }
}
