//! Big blobs without holding them: [`layer_chunks`] yields the same deterministic,
//! incompressible bytes as [`crate::layer`] chunk by chunk, [`gzip_layer_chunks`] wraps
//! them in a valid gzip stream (stored deflate blocks: real layers are gzip, and tools such
//! as skopeo recompress a layer they find uncompressed, changing its digest), and
//! [`Registry::push_layer_streamed`] / [`Registry::push_gzip_layer_streamed`] upload such
//! a stream through the harness client's streamed upload
//! ([`crate::RegistryApi::push_blob_streamed`]), so a 2 GiB layer costs a few MiB of
//! memory. Used by the benchmark (`infra/bench`); the requests themselves (uploads, mounts,
//! `HEAD`s) are `api.rs`'s.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::registry::Registry;
use crate::seed::{hex_digest, layer_state, next_layer_word};

/// Bytes per chunk yielded by [`layer_chunks`] (a multiple of 8).
pub const LAYER_CHUNK: usize = 1 << 20;

/// The bytes of [`crate::layer`]`(seed, size)`, as chunks of at most
/// [`LAYER_CHUNK`] bytes, generated on demand.
pub fn layer_chunks(seed: u64, size: u64) -> LayerChunks {
    LayerChunks {
        state: layer_state(seed),
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
        // Same sequence as `layer`: chunks are whole words except the last, which is
        // truncated like `layer` truncates.
        while out.len() < n {
            out.extend_from_slice(&next_layer_word(&mut self.state).to_le_bytes());
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

/// Streamed seeding of generated layers (async; panics on failure).
impl Registry {
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
