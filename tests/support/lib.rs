//! Test support for ferry's integration tests and its benchmark: a throw-away PKI
//! ([`Pki`]), real `docker-registry` processes in several auth/TLS [`Mode`]s
//! ([`Registry`]) with an in-process JWT [`TokenIssuer`], one client for their V2 API
//! ([`RegistryApi`]) with seeding ([`ImageSpec`], [`Registry::seed_image`], ...) and raw
//! inspection on top, a counting fault-injection [`Proxy`], helpers to run the `ferry`
//! binary ([`run_ferry`]) and skopeo ([`skopeo_inspect_raw`]), the shared end-to-end
//! set-up ([`Pair`], [`Workdir`]: registries, auth and images files, ferry runs and their
//! reports), a local SQS ([`Moto`], a `moto_server` process), and a stand-in Kubernetes
//! API server for `ferry discover` ([`KubeApi`]). Everything binds
//! loopback only, lives in temp dirs, and is torn down on drop (child processes also die
//! with the test process).
//!
//! Registries start synchronously (`Registry::start` blocks for a fraction
//! of a second); seeding and inspection are `async` and run on a shared
//! background runtime, so they work from any `#[tokio::test]` flavour. Use
//! `#[tokio::test(flavor = "multi_thread")]` when a test also blocks on
//! [`run_ferry`].

pub mod api;
pub mod certs;
pub mod ferry;
pub mod fixture;
pub mod kube;
pub mod lambda;
pub mod moto;
pub mod net;
pub mod proxy;
pub mod referrers;
pub mod registry;
pub mod seed;
pub mod skopeo;
pub mod streamed;
pub mod token;

#[cfg(test)]
mod selftest;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

pub use api::RegistryApi;
pub use certs::Pki;
pub use ferry::{
    ferry, ferry_at, ferry_bin, run_bounded, run_ferry, test_home, workspace_root, Output,
};
pub use fixture::{
    auth_yaml, ferry_plan, ferry_sync, ferry_sync_with, insecure_auth_yaml, read_json, sync_args,
    Pair, Workdir, FAST_RETRIES,
};
pub use kube::{client_cert, Caller, KubeApi, KubeRequest, ADMIN_TOKEN, LIMITED_TOKEN};
pub use lambda::{cargo_lambda_bin, LambdaEmulator};
pub use moto::{moto_bin, Moto, MOTO_ACCESS_KEY, MOTO_REGION};
pub use net::{free_port, http_client};
pub use proxy::{
    fail_first, matching, Fault, Hook, ProxiedRequest, Proxy, ProxyRequest, SeededRng, STALL_LIMIT,
};
pub use registry::{AccessLine, Mode, Options, Registry, BASIC_PASSWORD, BASIC_REALM, BASIC_USER};
pub use seed::{
    config_json, index_json, layer, manifest_json, manifest_media_type, sha256_digest,
    FetchedManifest, ImageSpec, IndexEntry, SeededImage, SeededIndex, ALL_MANIFEST_TYPES,
    DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER, OCI_MANIFEST,
};
pub use skopeo::{assert_same_raw, skopeo, skopeo_flags, skopeo_inspect_raw};
pub use streamed::{
    gzip_layer_chunks, gzip_layer_len, layer_chunks, layer_digest, LayerChunks, LAYER_CHUNK,
};
pub use token::{
    Access, TokenIssuer, TokenRequest, DEFAULT_EXPIRES_IN, TOKEN_ISSUER, TOKEN_PASSWORD,
    TOKEN_SERVICE, TOKEN_USER,
};

/// A fresh temporary directory (removed when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-test-")
        .tempdir()
        .expect("creating temp dir")
}

/// Write `contents` to `dir/name` (creating parent directories); returns the
/// path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating parent dirs");
    }
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

static AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove `path` (recursively) when the test process exits: for temp dirs
/// held in statics, which are never dropped.
pub(crate) fn remove_at_exit(path: PathBuf) {
    static REGISTER: Once = Once::new();
    extern "C" fn cleanup() {
        if let Ok(paths) = AT_EXIT.lock() {
            for p in paths.iter() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    REGISTER.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn()` with atexit(3).
        unsafe {
            libc::atexit(cleanup);
        }
    });
    AT_EXIT.lock().unwrap().push(path);
}
