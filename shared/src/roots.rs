//! Which certificate authorities ferry's HTTPS clients trust besides a registry's own `ca`
//! (the auth file's, applied by `registry`): the build's root store, chosen by a cargo
//! feature, and in a build with Mozilla's roots compiled in the PEM file named by
//! `SSL_CERT_FILE`. Building the clients is left to `registry` and `aws`.
//!
//! With `native-roots` (the default) rustls-native-certs reads the operating system's store
//! and itself honours `SSL_CERT_FILE`/`SSL_CERT_DIR`; with `bundled-roots` alone (the release
//! binaries) this module reads `SSL_CERT_FILE`, so a company's own CA can be added the
//! same way on every platform.

use std::path::PathBuf;

#[cfg(not(any(feature = "native-roots", feature = "bundled-roots")))]
compile_error!("ferry-core needs a TLS root store: enable `native-roots` or `bundled-roots`");

/// The root store this build trusts, as `ferry --version` names it.
pub const ROOT_STORE: &str = match (
    cfg!(feature = "native-roots"),
    cfg!(feature = "bundled-roots"),
) {
    (true, true) => "system and bundled Mozilla",
    (true, false) => "system",
    _ => "bundled Mozilla",
};

/// The environment variable naming a PEM file of extra trusted certificates.
pub const CERT_FILE_VAR: &str = "SSL_CERT_FILE";

/// A PEM bundle larger than this is refused: a system's whole bundle is a few hundred KiB.
const MAX_CERT_FILE_BYTES: u64 = 4 << 20;

/// Why the certificates of `SSL_CERT_FILE` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootsError {
    #[error("{CERT_FILE_VAR} {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{CERT_FILE_VAR} {}: not a PEM bundle of certificates: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The certificates to trust on top of the build's root store: those of `SSL_CERT_FILE`
/// when this build carries no system store (which would read the file itself), else none.
pub fn extra_roots() -> Result<Vec<reqwest::Certificate>, RootsError> {
    if cfg!(feature = "native-roots") {
        return Ok(Vec::new());
    }
    match std::env::var_os(CERT_FILE_VAR) {
        Some(path) if !path.is_empty() => read_pem_bundle(PathBuf::from(path)),
        _ => Ok(Vec::new()),
    }
}

/// Every certificate of the PEM file at `path`, read with a size cap.
fn read_pem_bundle(path: PathBuf) -> Result<Vec<reqwest::Certificate>, RootsError> {
    use std::io::Read;
    let unreadable = |reason: String| RootsError::Unreadable {
        path: path.clone(),
        reason,
    };
    let file = std::fs::File::open(&path).map_err(|e| unreadable(e.to_string()))?;
    let mut pem = Vec::new();
    file.take(MAX_CERT_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| unreadable(e.to_string()))?;
    if pem.len() as u64 > MAX_CERT_FILE_BYTES {
        return Err(unreadable(format!(
            "larger than {MAX_CERT_FILE_BYTES} bytes"
        )));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RootsError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(RootsError::Invalid {
            path,
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_pem_bundle(path.clone()).unwrap_err();
        assert!(matches!(err, RootsError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn a_missing_file_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_pem_bundle(dir.path().join("nope.pem")).unwrap_err();
        assert!(matches!(err, RootsError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_CERT_FILE_BYTES + 1).unwrap();
        let err = read_pem_bundle(path).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
