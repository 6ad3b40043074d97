//! The fault suite (issue 12): a multi-image sync (five single images, one sharing a layer
//! with another, and a three-platform index) from a real source registry to a real target
//! registry, each behind the fault proxy, which injects what a real registry cannot produce
//! on demand, at seeded random: 503s, 429s with `Retry-After: 1`, response bodies cut off
//! or stalled midway (ferry runs with a 2 s read timeout) and uploads reset partway; and,
//! separately, blob bodies damaged in transit (30% of blob GETs). Every seed's run must end
//! with exit 0 and every image byte-identical under skopeo; a tally of seeds, faults by kind
//! and outcomes is printed for the record. The image set is also the crash suite's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use support::{
    assert_same_raw, layer, Fault, Hook, ImageSpec, Mode, Proxy, ProxyRequest, Registry, SeededRng,
    Workdir,
};

/// Seeds of the mixed-fault runs and of the corruption runs.
const SEEDS: [u64; 4] = [11, 12, 13, 14];

/// Environment of every faulted run: fast retries, and a read timeout short enough that a
/// stalled body is given up on (and retried) quickly.
pub(crate) const FAULT_ENV: [(&str, &str); 2] = [
    ("FERRY_RETRY_BASE_MS", "5"),
    ("FERRY_READ_TIMEOUT_SECS", "2"),
];

/// One image of the corpus: `from` (`repo:tag`) in the source, copied to `to` (a
/// repository) in the target under the same tag.
pub(crate) struct Copy {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
}

impl Copy {
    /// The target reference, `to:tag`.
    pub(crate) fn target(&self) -> String {
        format!("{}:{}", self.to, self.tag())
    }

    /// The target's tag.
    pub(crate) fn tag(&self) -> &'static str {
        self.from.rsplit(':').next().expect("a tagged source")
    }
}

/// The images both suites copy.
pub(crate) const CORPUS: [Copy; 6] = [
    Copy {
        from: "app/one:v1",
        to: "mirror/one",
    },
    Copy {
        from: "app/two:v1",
        to: "mirror/two",
    },
    Copy {
        from: "app/three:v2",
        to: "mirror/three",
    },
    Copy {
        from: "lib/four:latest",
        to: "mirror/four",
    },
    Copy {
        from: "lib/five:v1",
        to: "mirror/five",
    },
    Copy {
        from: "multi/six:v1",
        to: "mirror/six",
    },
];

/// Seeds [`CORPUS`] into `src`: Docker and OCI images of 1–4 layers from 16 KiB to
/// 512 KiB (`lib/five` shares its base layer with `app/one`), and a Docker manifest list
/// for linux/amd64, linux/arm64 and linux/arm/v7.
pub(crate) async fn seed_corpus(src: &Registry) {
    src.seed_image("app/one", "v1", &ImageSpec::with_layers(100, 3, 64 << 10))
        .await;
    src.seed_image("app/two", "v1", &ImageSpec::with_layers(110, 2, 300 << 10))
        .await;
    src.seed_image(
        "app/three",
        "v2",
        &ImageSpec::with_layers(120, 4, 16 << 10).oci(true),
    )
    .await;
    src.seed_image(
        "lib/four",
        "latest",
        &ImageSpec::with_layers(130, 1, 512 << 10),
    )
    .await;
    let shared = ImageSpec::new(vec![layer(100, 64 << 10), layer(140, 100 << 10)]);
    src.seed_image("lib/five", "v1", &shared).await;
    src.seed_index(
        "multi/six",
        "v1",
        &[
            ("linux", "amd64", None),
            ("linux", "arm64", None),
            ("linux", "arm", Some("v7")),
        ],
        false,
    )
    .await;
}

/// An images file copying [`CORPUS`] from `src_host` to `dst_host`.
pub(crate) fn corpus_rules(src_host: &str, dst_host: &str) -> String {
    CORPUS
        .iter()
        .map(|c| format!("{src_host}/{}: {dst_host}/{}\n", c.from, c.to))
        .collect()
}

/// Asserts every image of [`CORPUS`] reads the same bytes in `src` and `dst` (skopeo).
#[track_caller]
pub(crate) fn assert_corpus_copied(src: &Registry, dst: &Registry) {
    for copy in &CORPUS {
        assert_same_raw(src, copy.from, dst, &copy.target());
    }
}

fn is_blob_get(r: &ProxyRequest) -> bool {
    r.method == "GET" && r.path.contains("/blobs/sha256:")
}

fn is_body_get(r: &ProxyRequest) -> bool {
    is_blob_get(r) || (r.method == "GET" && r.path.contains("/manifests/"))
}

fn is_upload(r: &ProxyRequest) -> bool {
    matches!(r.method.as_str(), "PUT" | "PATCH") && r.path.contains("/blobs/uploads/")
}

/// In front of the source, per request: 5% 503, 5% 429 (`Retry-After: 1`), and for blob
/// and manifest GETs 20% bodies cut off after 0–199 bytes; blob GETs also stall after 0–199
/// bytes 2% of the time, and the first one always does, so each seed sees a stall.
fn source_faults(seed: u64) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    let rng = Mutex::new(SeededRng::new(seed));
    let first_stall = AtomicBool::new(true);
    move |r: &ProxyRequest| {
        if is_blob_get(r) && first_stall.swap(false, Ordering::SeqCst) {
            return Some(Fault::StallBody { after: 100 });
        }
        let mut rng = rng.lock().unwrap();
        match rng.below(1000) {
            0..50 => Some(Fault::unavailable()),
            50..100 => Some(Fault::too_many_requests(1)),
            100..300 if is_body_get(r) => Some(Fault::TruncateBody(rng.below(200) as usize)),
            300..320 if is_blob_get(r) => Some(Fault::StallBody {
                after: rng.below(200) as usize,
            }),
            _ => None,
        }
    }
}

/// In front of the target, per request: 5% 503, 5% 429 (`Retry-After: 1`), and 10% of
/// upload PUTs and PATCHes reset after 0–64 KiB of their body; the first upload always is.
fn target_faults(seed: u64) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    let rng = Mutex::new(SeededRng::new(seed ^ 0x007a_26e7));
    let first_reset = AtomicBool::new(true);
    move |r: &ProxyRequest| {
        if is_upload(r) && first_reset.swap(false, Ordering::SeqCst) {
            return Some(Fault::ResetMidUpload { after: 1000 });
        }
        let mut rng = rng.lock().unwrap();
        match rng.below(1000) {
            0..50 => Some(Fault::unavailable()),
            50..100 => Some(Fault::too_many_requests(1)),
            100..200 if is_upload(r) => Some(Fault::ResetMidUpload {
                after: rng.below(64 << 10) as usize,
            }),
            _ => None,
        }
    }
}

/// 30% of blob GETs damaged (first byte flipped: same length, wrong digest).
fn corrupting(seed: u64) -> impl Fn(&ProxyRequest) -> Option<Fault> + Send + Sync {
    let rng = Mutex::new(SeededRng::new(seed));
    move |r: &ProxyRequest| {
        let corrupt = is_blob_get(r) && rng.lock().unwrap().chance(0.3);
        corrupt.then_some(Fault::CorruptBody)
    }
}

/// What one seed's run came to, for the tally.
struct Outcome {
    seed: u64,
    code: Option<i32>,
    copied: u64,
    failed: u64,
    max_attempts: u64,
    faults: BTreeMap<String, usize>,
}

/// One seed: a fresh target, the corpus synced through `src_proxy` (hooked already) and a
/// target proxy with `target_hook`; asserts exit 0 and every image byte-identical.
fn run_seed(src: &Registry, src_proxy: &Proxy, seed: u64, target_hook: Option<Hook>) -> Outcome {
    let dst = Registry::start(Mode::Http);
    let dst_proxy = match target_hook {
        Some(hook) => Proxy::start(&dst, move |r: &ProxyRequest| hook(r)),
        None => Proxy::passthrough(&dst),
    };
    let work = Workdir::insecure(&[src_proxy.host(), dst_proxy.host()]);
    let images = work.images(corpus_rules(&src_proxy.host(), &dst_proxy.host()));
    let (out, report) = work.sync_reporting_with(&images, &[], &FAULT_ENV);
    let mut faults = src_proxy.fault_tally();
    for (kind, n) in dst_proxy.fault_tally() {
        *faults.entry(kind).or_insert(0) += n;
    }
    let outcome = Outcome {
        seed,
        code: out.code(),
        copied: report["totals"]["copied"].as_u64().unwrap_or(0),
        failed: report["totals"]["failed"].as_u64().unwrap_or(0),
        max_attempts: report["images"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["attempts"].as_u64())
            .max()
            .unwrap_or(0),
        faults,
    };
    assert!(
        out.success(),
        "seed {seed}: {}\nsource faults {:?}\ntarget faults {:?}",
        out,
        src_proxy.fault_tally(),
        dst_proxy.fault_tally()
    );
    assert_eq!(outcome.failed, 0, "seed {seed}: {report}");
    assert_corpus_copied(src, &dst);
    outcome
}

/// Prints the tally: one line per seed, then faults by kind over all seeds.
fn tally(suite: &str, outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut total: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        eprintln!(
            "{suite}: seed {} exit {:?}, {} images copied, {} failed, at most {} round(s); faults {:?}",
            o.seed, o.code, o.copied, o.failed, o.max_attempts, o.faults
        );
        for (kind, n) in &o.faults {
            *total.entry(kind.clone()).or_insert(0) += n;
        }
    }
    eprintln!(
        "{suite}: {} seeds x {} images, all exit 0 and byte-identical; faults injected {total:?}",
        outcomes.len(),
        CORPUS.len()
    );
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_image_sync_outlasts_mixed_faults_on_both_sides() {
    let src = Registry::start(Mode::Http);
    seed_corpus(&src).await;
    let mut outcomes = Vec::new();
    for seed in SEEDS {
        let src_proxy = Proxy::start(&src, source_faults(seed));
        let outcome = run_seed(&src, &src_proxy, seed, Some(Arc::new(target_faults(seed))));
        assert!(
            outcome.faults.values().sum::<usize>() > 0,
            "seed {seed} injected nothing"
        );
        outcomes.push(outcome);
    }
    let total = tally("mixed faults", &outcomes);
    for kind in ["503", "429", "truncate", "stall", "upload reset"] {
        assert!(
            total.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {total:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_image_sync_outlasts_thirty_percent_corrupted_blobs() {
    let src = Registry::start(Mode::Http);
    seed_corpus(&src).await;
    let mut outcomes = Vec::new();
    for seed in SEEDS {
        let src_proxy = Proxy::start(&src, corrupting(seed));
        let outcome = run_seed(&src, &src_proxy, seed, None);
        assert!(
            outcome.faults.get("corrupt").copied().unwrap_or(0) > 0,
            "seed {seed} corrupted nothing"
        );
        outcomes.push(outcome);
    }
    tally("30% corrupted blobs", &outcomes);
}
