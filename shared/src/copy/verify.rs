//! Checking a blob while it streams: `Verifier` hashes and counts the bytes going past and,
//! at the end of the stream, says whether they are the blob the manifest named (a
//! `Mismatch` when not), in time to abort the upload before the registry commits it. Where
//! the bytes come from and go to is `blob`'s.

use bytes::Bytes;
use sha2::Digest as _;
use thiserror::Error;

use crate::reference::{Algorithm, Digest};
use crate::registry::{ErrorKind, RegistryError};

/// How a streamed blob differs from what its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    #[error("expected {expected} bytes, received {actual} bytes")]
    Size { expected: u64, actual: u64 },
    #[error("expected {expected}, received {actual}")]
    Digest { expected: Digest, actual: String },
}

/// Hashes and counts a blob as it streams past.
pub(super) struct Verifier {
    expected: Digest,
    hasher: Hasher,
    pub(super) bytes: u64,
    pub(super) chunks: u64,
    /// Set by `finish` when the blob is not the one expected.
    pub(super) mismatch: Option<Mismatch>,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Verifier {
    pub(super) fn new(expected: &Digest) -> Self {
        let hasher = match expected.algorithm() {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Verifier {
            expected: expected.clone(),
            hasher,
            bytes: 0,
            chunks: 0,
            mismatch: None,
        }
    }

    pub(super) fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.chunks += 1;
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
        }
    }

    /// At the end of the stream: an empty chunk if all is well, else an error that aborts
    /// the upload before the registry can commit it. The size, when known, is checked
    /// first.
    pub(super) fn finish(&mut self, size: Option<u64>) -> Result<Bytes, RegistryError> {
        let actual = match std::mem::replace(&mut self.hasher, Hasher::Sha256(sha2::Sha256::new()))
        {
            Hasher::Sha256(h) => format!("sha256:{}", hex(&h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex(&h.finalize())),
        };
        if let Some(size) = size.filter(|s| *s != self.bytes) {
            self.mismatch = Some(Mismatch::Size {
                expected: size,
                actual: self.bytes,
            });
        } else if actual != self.expected.as_str() {
            self.mismatch = Some(Mismatch::Digest {
                expected: self.expected.clone(),
                actual,
            });
        }
        match &self.mismatch {
            None => Ok(Bytes::new()),
            Some(mismatch) => Err(RegistryError::new(
                format!("verify blob {}", self.expected),
                ErrorKind::Protocol(mismatch.to_string()),
            )),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_then_digest() {
        let digest = Digest::sha256(b"hello");
        let mut ok = Verifier::new(&digest);
        ok.update(b"hel");
        ok.update(b"lo");
        assert!(ok.finish(Some(5)).unwrap().is_empty());
        assert_eq!((ok.bytes, ok.chunks, ok.mismatch), (5, 2, None));

        let mut short = Verifier::new(&digest);
        short.update(b"hell");
        assert!(short.finish(Some(5)).is_err());
        assert_eq!(
            short.mismatch.unwrap().to_string(),
            "expected 5 bytes, received 4 bytes"
        );

        let mut other = Verifier::new(&digest);
        other.update(b"HELLO");
        assert!(other.finish(None).is_err());
        assert_eq!(
            other.mismatch,
            Some(Mismatch::Digest {
                expected: digest.clone(),
                actual: Digest::sha256(b"HELLO").to_string(),
            })
        );
    }
}
