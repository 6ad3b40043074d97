//! Seeding big blobs without holding them: [`layer_chunks`] yields the same
//! deterministic, incompressible bytes as [`crate::layer`] chunk by chunk,
//! [`gzip_layer_chunks`] wraps them in a valid gzip stream (stored deflate
//! blocks: real layers are gzip, and tools such as skopeo recompress a layer
//! they find uncompressed, changing its digest), and
//! [`Registry::push_blob_streamed`] uploads any such stream (POST, one
//! streamed `PATCH`, then `PUT ?digest=`) while hashing, so a 2 GiB layer
//! costs a few MiB of memory. [`Registry::mount_blob`] links a blob already in the registry into
//! another repository, and [`Registry::blob_size`] reads a blob's size with a
//! `HEAD`. Used by the benchmark (`infra/bench`); like the rest of the
//! support helpers they run on the background runtime and panic with the
//! registry's answer on failure.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::net;
use crate::registry::Registry;
use crate::seed::{expect_status, Auth};

/// Bytes per chunk yielded by [`layer_chunks`] (a multiple of 8).
pub const LAYER_CHUNK: usize = 1 << 20;

/// The bytes of [`crate::layer`]`(seed, size)`, as chunks of at most
/// [`LAYER_CHUNK`] bytes, generated on demand.
pub fn layer_chunks(seed: u64, size: u64) -> LayerChunks {
    LayerChunks {
        state: seed ^ 0x6a09_e667_f3bc_c908,
        left: size,
    }
}

/// Iterator returned by [`layer_chunks`].
#[derive(Clone, Debug)]
pub struct LayerChunks {
    state: u64,
    left: u64,
}

impl Iterator for LayerChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(LAYER_CHUNK as u64) as usize;
        let mut out = Vec::with_capacity(n + 8);
        // Same SplitMix64 sequence as `layer`: chunks are whole words except
        // the last, which is truncated like `layer` truncates.
        while out.len() < n {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(n);
        self.left -= n as u64;
        Some(Bytes::from(out))
    }
}

/// Stored deflate blocks hold at most this many bytes.
const STORED_MAX: usize = 65_535;

/// A gzip stream whose payload is [`crate::layer`]`(seed, payload)`: a
/// 10-byte header, the payload in stored (uncompressed) deflate blocks, and
/// the CRC-32/size trailer. Valid gzip (`gzip -t` accepts it), incompressible,
/// [`gzip_layer_len`]`(payload)` bytes long, generated chunk by chunk.
pub fn gzip_layer_chunks(seed: u64, payload: u64) -> impl Iterator<Item = Bytes> + Send {
    // mtime 0, no name, OS "unknown": deterministic.
    let header = Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut inner = layer_chunks(seed, payload);
    let mut crc = Crc32::new();
    let mut done = false;
    std::iter::once(header).chain(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let Some(chunk) = inner.next() else {
            done = true;
            let mut out = Vec::with_capacity(13);
            if payload == 0 {
                out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
            }
            out.extend_from_slice(&crc.finish().to_le_bytes());
            out.extend_from_slice(&(payload as u32).to_le_bytes());
            return Some(Bytes::from(out));
        };
        crc.update(&chunk);
        let last_chunk = inner.left == 0;
        let pieces = chunk.len().div_ceil(STORED_MAX);
        let mut out = Vec::with_capacity(chunk.len() + 5 * pieces);
        for (i, piece) in chunk.chunks(STORED_MAX).enumerate() {
            let last = last_chunk && i + 1 == pieces;
            let len = piece.len() as u16;
            out.push(u8::from(last));
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(piece);
        }
        Some(Bytes::from(out))
    }))
}

/// Length of [`gzip_layer_chunks`]`(_, payload)`.
pub fn gzip_layer_len(payload: u64) -> u64 {
    let chunk = LAYER_CHUNK as u64;
    let blocks_per = |n: u64| n.div_ceil(STORED_MAX as u64);
    let blocks = if payload == 0 {
        1
    } else {
        (payload / chunk) * blocks_per(chunk) + blocks_per(payload % chunk)
    };
    10 + payload + 5 * blocks + 8
}

/// CRC-32 (IEEE, as gzip uses), slice-by-8.
struct Crc32 {
    crc: u32,
}

fn crc_tables() -> &'static [[u32; 256]; 8] {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            }
        }
        t
    })
}

impl Crc32 {
    fn new() -> Crc32 {
        Crc32 { crc: !0 }
    }

    fn update(&mut self, data: &[u8]) {
        let t = crc_tables();
        let mut crc = self.crc;
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
            let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in words.remainder() {
            crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        self.crc = crc;
    }

    fn finish(&self) -> u32 {
        !self.crc
    }
}

/// `sha256:<hex>` of [`crate::layer`]`(seed, size)`, computed chunk by chunk.
pub fn layer_digest(seed: u64, size: u64) -> String {
    let mut h = Sha256::new();
    for chunk in layer_chunks(seed, size) {
        h.update(&chunk);
    }
    hex_digest(h)
}

fn hex_digest(h: Sha256) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in h.finalize() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[derive(Clone)]
struct Api {
    base: String,
    auth: Auth,
}

impl Api {
    fn request(&self, method: reqwest::Method, url: &str, repo: &str) -> reqwest::RequestBuilder {
        self.request_from(method, url, repo, None)
    }

    /// A request to `repo`; in token mode the token also grants pull on `from` (a
    /// mount needs both).
    fn request_from(
        &self,
        method: reqwest::Method,
        url: &str,
        repo: &str,
        from: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = net::bg_client()
            .request(method, url)
            .timeout(std::time::Duration::from_secs(3600));
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Token(issuer) => {
                let own = format!("repository:{repo}:pull,push,delete");
                let other = from.map(|f| format!("repository:{f}:pull"));
                let mut scopes = vec![own.as_str()];
                scopes.extend(other.as_deref());
                req.bearer_auth(issuer.mint(&scopes))
            }
        }
    }

    fn url(&self, repo: &str, rest: &str) -> String {
        format!("{}/v2/{repo}/{rest}", self.base)
    }

    fn location(&self, resp: &reqwest::Response) -> anyhow::Result<url::Url> {
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("upload answer without Location"))?;
        Ok(url::Url::parse(&self.base)?.join(location)?)
    }

    async fn push_blob_streamed(
        &self,
        repo: &str,
        chunks: impl Iterator<Item = Bytes> + Send + 'static,
    ) -> anyhow::Result<String> {
        let start = self
            .request(
                reqwest::Method::POST,
                &self.url(repo, "blobs/uploads/"),
                repo,
            )
            .header("content-length", "0")
            .send()
            .await?;
        let start = expect_status(start, 202, "starting blob upload").await?;
        let patch_url = self.location(&start)?;
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let tap = hasher.clone();
        let chunks = futures::stream::iter(chunks.map(move |c| {
            tap.lock().unwrap().update(&c);
            Ok::<_, std::io::Error>(c)
        }));
        let patch = self
            .request(reqwest::Method::PATCH, patch_url.as_str(), repo)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await?;
        let patch = expect_status(patch, 202, "streaming the blob (PATCH)").await?;
        let mut put_url = self.location(&patch)?;
        let digest = hex_digest(std::mem::take(&mut *hasher.lock().unwrap()));
        put_url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .request(reqwest::Method::PUT, put_url.as_str(), repo)
            .header("content-type", "application/octet-stream")
            .header("content-length", "0")
            .send()
            .await?;
        expect_status(put, 201, &format!("finishing upload of {digest}")).await?;
        Ok(digest)
    }

    async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> anyhow::Result<bool> {
        let url = format!(
            "{}?mount={digest}&from={from}",
            self.url(repo, "blobs/uploads/")
        );
        let resp = self
            .request_from(reqwest::Method::POST, &url, repo, Some(from))
            .header("content-length", "0")
            .send()
            .await?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                // Not mounted: an upload session was opened instead; cancel it.
                if let Ok(loc) = self.location(&resp) {
                    let _ = self
                        .request(reqwest::Method::DELETE, loc.as_str(), repo)
                        .send()
                        .await;
                }
                Ok(false)
            }
            _ => {
                expect_status(resp, 201, &format!("mounting {digest} from {from}")).await?;
                unreachable!()
            }
        }
    }

    async fn blob_size(&self, repo: &str, digest: &str) -> anyhow::Result<Option<u64>> {
        let resp = self
            .request(
                reqwest::Method::HEAD,
                &self.url(repo, &format!("blobs/{digest}")),
                repo,
            )
            .send()
            .await?;
        match resp.status().as_u16() {
            200 => Ok(Some(
                resp.headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("HEAD {repo}@{digest}: no Content-Length"))?,
            )),
            404 => Ok(None),
            s => anyhow::bail!("HEAD blob {repo}@{digest}: {s}"),
        }
    }
}

/// Streamed seeding and cheap inspection (async; panics on failure).
impl Registry {
    fn streamed_api(&self) -> Api {
        Api {
            base: self.base_url(),
            auth: self.auth(),
        }
    }

    /// Upload the bytes `chunks` yields as a blob of `repo` without holding
    /// them (POST, one streamed `PATCH`, `PUT ?digest=`); returns the digest.
    /// Unlike [`Registry::push_blob`] it does not `HEAD` first (the digest is
    /// only known once the bytes have streamed).
    pub async fn push_blob_streamed(
        &self,
        repo: &str,
        chunks: impl Iterator<Item = Bytes> + Send + 'static,
    ) -> String {
        let (api, repo) = (self.streamed_api(), repo.to_owned());
        net::on_bg(async move { api.push_blob_streamed(&repo, chunks).await })
            .await
            .unwrap_or_else(|e| panic!("push_blob_streamed: {e:#}"))
    }

    /// [`Registry::push_blob_streamed`] of [`layer_chunks`]`(seed, size)`.
    pub async fn push_layer_streamed(&self, repo: &str, seed: u64, size: u64) -> String {
        self.push_blob_streamed(repo, layer_chunks(seed, size))
            .await
    }

    /// [`Registry::push_blob_streamed`] of [`gzip_layer_chunks`]`(seed,
    /// payload)` ([`gzip_layer_len`]`(payload)` bytes).
    pub async fn push_gzip_layer_streamed(&self, repo: &str, seed: u64, payload: u64) -> String {
        self.push_blob_streamed(repo, gzip_layer_chunks(seed, payload))
            .await
    }

    /// Cross-repository mount of `digest` from `from` into `repo`; `false`
    /// when the registry declined (the upload session it opened instead is
    /// cancelled).
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> bool {
        let (api, repo, digest, from) = (
            self.streamed_api(),
            repo.to_owned(),
            digest.to_owned(),
            from.to_owned(),
        );
        net::on_bg(async move { api.mount_blob(&repo, &digest, &from).await })
            .await
            .unwrap_or_else(|e| panic!("mount_blob: {e:#}"))
    }

    /// The size a `HEAD` of the blob answers; `None` on 404.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> Option<u64> {
        let (api, repo, digest) = (self.streamed_api(), repo.to_owned(), digest.to_owned());
        net::on_bg(async move { api.blob_size(&repo, &digest).await })
            .await
            .unwrap_or_else(|e| panic!("blob_size: {e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_match_layer() {
        for size in [
            0u64,
            1,
            7,
            8,
            9,
            1000,
            LAYER_CHUNK as u64,
            LAYER_CHUNK as u64 * 2 + 13,
        ] {
            let joined: Vec<u8> = layer_chunks(42, size).flat_map(|c| c.to_vec()).collect();
            assert_eq!(joined, crate::layer(42, size as usize), "size {size}");
            assert_eq!(
                layer_digest(42, size),
                crate::sha256_digest(&joined),
                "size {size}"
            );
        }
    }

    #[test]
    fn crc32_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xcbf4_3926);
    }

    #[test]
    fn gzip_layers_are_valid_gzip_of_the_layer() {
        let big = LAYER_CHUNK as u64 * 2 + 70_000;
        for payload in [0u64, 5, 65_535, 65_536, LAYER_CHUNK as u64, big] {
            let gz: Vec<u8> = gzip_layer_chunks(9, payload)
                .flat_map(|c| c.to_vec())
                .collect();
            assert_eq!(
                gz.len() as u64,
                gzip_layer_len(payload),
                "payload {payload}"
            );
            let mut child = std::process::Command::new("gzip")
                .arg("-dc")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("running gzip");
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&gz).unwrap();
            });
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(
                out.status.success(),
                "gzip -dc failed for payload {payload}"
            );
            assert_eq!(
                out.stdout,
                crate::layer(9, payload as usize),
                "payload {payload}"
            );
        }
    }
}
