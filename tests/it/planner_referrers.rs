//! The planner notices referrers added to images already mirrored (issue 15, item 3)
//! wherever a listing can show them: a rule naming its tags (its repository listed once,
//! lazily, only when an image of it is in sync), a fan-out's image slices (whose expansions
//! list nothing of their own), tags declared immutable (no HEAD at all unless the source's
//! listing shows a referrer tag a target's listing lacks), and `--referrers-type` (a
//! referrer of another type sends no job). `ferry plan --queue-url` writes to moto's SQS;
//! `ferry worker` copies; request counts come from the real registries' access logs.

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::referrers::{
    fallback_tag, oras_push, push_cosign_tag, referrer_descriptor, write_fallback_index, Subject,
    COSIGN_SIMPLESIGNING, DSSE_ENVELOPE,
};
use support::{
    run_ferry, ImageSpec, Mode, Moto, Output, Pair, Registry, SeededImage, FAST_RETRIES,
};

const SIGNATURE: &str =
    r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#;

/// `ferry plan --queue-url` and `ferry worker` on one moto queue, as a machine runs them.
pub(crate) struct QueueRun {
    moto: Moto,
    url: String,
    auth: PathBuf,
}

impl QueueRun {
    /// A queue for runs with the `auth` file.
    pub(crate) async fn start(auth: &Path) -> QueueRun {
        let moto = Moto::start();
        let (url, _) = moto.create_queue("ferry-jobs", None).await;
        QueueRun {
            moto,
            url,
            auth: auth.to_path_buf(),
        }
    }

    fn run(&self, mut args: Vec<String>, extra: &[&str]) -> Output {
        let env = self.moto.cli_env();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(FAST_RETRIES);
        args.push(format!("--auth={}", self.auth.display()));
        args.push(format!("--queue-url={}", self.url));
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run_ferry(&args, &env);
        out.assert_success();
        out
    }

    /// `ferry plan --queue-url`'s summary.
    fn plan(&self, images: &Path, extra: &[&str]) -> Value {
        let out = self.run(
            vec!["plan".into(), format!("--images={}", images.display())],
            extra,
        );
        serde_json::from_str(out.stdout.trim()).unwrap()
    }

    /// The copy jobs a plan sent.
    pub(crate) fn jobs(&self, images: &Path, extra: &[&str]) -> u64 {
        let summary = self.plan(images, extra);
        summary["jobs_enqueued"].as_u64().unwrap()
    }

    /// `ferry worker` until the queue is empty, which ran `jobs` jobs, all successfully;
    /// then `tag` is on the target as at the source.
    fn work_copies(&self, p: &Pair, jobs: usize, tag: &str) {
        let out = self.work();
        let line = format!("{jobs} jobs succeeded, 0 failed");
        assert!(out.stderr.contains(&line), "{out}");
        p.assert_copied(&format!("team/app:{tag}"), &format!("mirror/app:{tag}"));
    }

    /// `ferry worker` until the queue is empty.
    pub(crate) fn work(&self) -> Output {
        self.run(
            vec![
                "worker".into(),
                "--wait=1".into(),
                "--exit-when-empty".into(),
            ],
            &[],
        )
    }
}

/// Requests about a repository, as `METHOD path`: all but the `/v2/` ping.
fn repository_requests(registry: &Registry) -> Vec<String> {
    let mut requests: Vec<String> = registry
        .requests()
        .iter()
        .filter(|r| r.path != "/v2/")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    requests.sort();
    requests
}

fn clear(p: &Pair) {
    p.src.clear_requests();
    p.dst.clear_requests();
}

/// `team/app:v1` and `:v2` at the source; `v1`.
async fn seeded(p: &Pair) -> SeededImage {
    let v1 = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(81, 1, 512).oci(true),
        )
        .await;
    p.src
        .seed_image(
            "team/app",
            "v2",
            &ImageSpec::with_layers(82, 1, 512).oci(true),
        )
        .await;
    v1
}

/// A pair with [`seeded`]'s images at the source, a queue, and the rule `"source": mirror/app`.
async fn set_up(source: &str) -> (Pair, SeededImage, QueueRun, PathBuf) {
    let p = Pair::start(Mode::Http, Mode::Http);
    let v1 = seeded(&p).await;
    let q = QueueRun::start(p.work.auth()).await;
    let images = p.work.images(format!(
        "\"{}\": {}\n",
        p.src.image(source),
        p.dst.image("mirror/app")
    ));
    (p, v1, q, images)
}

async fn sign(p: &Pair, digest: &str, suffix: &str, layer_type: &str) -> String {
    push_cosign_tag(&p.src, "team/app", digest, suffix, layer_type, &[SIGNATURE]).await;
    format!("{}.{suffix}", fallback_tag(digest))
}

/// A rule naming its tag: the plan lists nothing, so a warm plan lists the source repository
/// once for the referrer check (one `tags/list` more than with `--referrers=false`, and the
/// referrers-API probe per source registry, nothing else), and a signature pushed after the mirror is enqueued; a cold plan, with no image in
/// sync, lists nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_naming_its_tags_notices_a_later_signature() {
    let (p, v1, q, images) = set_up("team/app:v1,v2").await;
    let digest = v1.digest;
    clear(&p);
    assert_eq!(q.jobs(&images, &[]), 2);
    assert_eq!(
        p.src.count("GET", "/tags/list"),
        0,
        "{:?}",
        p.src.requests()
    );
    q.work();

    // Warm: the same requests as without referrers, and one listing of the source.
    clear(&p);
    assert_eq!(q.jobs(&images, &["--referrers=false"]), 0);
    let (src_before, dst_before) = (repository_requests(&p.src), repository_requests(&p.dst));
    clear(&p);
    assert_eq!(q.jobs(&images, &[]), 0);
    let mut src_expected = src_before.clone();
    src_expected.push("GET /v2/team/app/tags/list".into());
    src_expected.sort();
    // And the referrers-API probe, once per source registry and plan (2.8 answers 404).
    let mut src_now = repository_requests(&p.src);
    let probe = |r: &String| r.starts_with("GET /v2/team/app/referrers/sha256:");
    assert_eq!(
        src_now.iter().filter(|r| probe(r)).count(),
        1,
        "{src_now:?}"
    );
    src_now.retain(|r| !probe(r));
    assert_eq!(src_now, src_expected);
    assert_eq!(repository_requests(&p.dst), dst_before);

    let sig = sign(&p, &digest, "sig", COSIGN_SIMPLESIGNING).await;
    assert_eq!(q.jobs(&images, &[]), 1);
    q.work_copies(&p, 1, &sig);
    assert_eq!(q.jobs(&images, &[]), 0);
}

/// Fan-out into image slices (`listed` plan jobs, whose expansion lists nothing): each
/// expansion lists the source once for its in-sync images, so a later signature is noticed.
#[tokio::test(flavor = "multi_thread")]
async fn fan_out_slices_notice_a_later_signature() {
    let (p, v1, q, images) = set_up("team/app").await;
    let digest = v1.digest;
    let fan_out = ["--fan-out=1"];
    let summary = q.plan(&images, &fan_out);
    assert_eq!(summary["plan_jobs_enqueued"], 2, "{summary}");
    let out = q.work();
    assert!(out.stderr.contains("4 jobs succeeded, 0 failed"), "{out}");
    p.assert_copied("team/app:v1", "mirror/app:v1");

    // Warm: two plan jobs, no copy job.
    q.plan(&images, &fan_out);
    let out = q.work();
    assert!(out.stderr.contains("2 jobs succeeded, 0 failed"), "{out}");

    let sig = sign(&p, &digest, "sig", COSIGN_SIMPLESIGNING).await;
    clear(&p);
    q.plan(&images, &fan_out);
    // The planner lists the repository once; each expansion lists it for its image.
    assert_eq!(p.src.count("GET", "/v2/team/app/tags/list"), 1);
    q.work_copies(&p, 3, &sig);
}

/// Every tag immutable and on the target: a warm plan asks nothing but the two listings, as
/// before; a signature pushed later is a referrer tag the target's listing lacks, so the
/// repository's immutable images are HEADed (the listing cannot tell whose it is) and the
/// signed one is enqueued, by digest, which the worker copies; then listings only again.
#[tokio::test(flavor = "multi_thread")]
async fn an_immutable_tag_s_later_signature_is_noticed() {
    let (p, v1, q, images) = set_up("team/app").await;
    let digest = v1.digest;
    let immutable = ["--immutable-tags=^v"];
    assert_eq!(q.jobs(&images, &immutable), 2);
    q.work();
    let listings_only = |p: &Pair| {
        assert_eq!(
            repository_requests(&p.src),
            ["GET /v2/team/app/tags/list"],
            "source"
        );
        assert_eq!(
            repository_requests(&p.dst),
            ["GET /v2/mirror/app/tags/list"],
            "target"
        );
    };
    clear(&p);
    assert_eq!(q.jobs(&images, &immutable), 0);
    listings_only(&p);

    let sig = sign(&p, &digest, "sig", COSIGN_SIMPLESIGNING).await;
    clear(&p);
    assert_eq!(q.jobs(&images, &immutable), 1);
    assert_eq!(
        p.src.count("HEAD", "/manifests/v"),
        2,
        "{:?}",
        p.src.requests()
    );
    q.work_copies(&p, 1, &sig);
    clear(&p);
    assert_eq!(q.jobs(&images, &immutable), 0);
    listings_only(&p);
}

/// `--referrers-type`: a signature or an SBOM of another type than the one named sends no
/// job (the cosign tag's manifest read once to tell its type, the fallback index's entries
/// by their `artifactType`); an attestation of the type named does.
#[tokio::test(flavor = "multi_thread")]
async fn only_referrers_of_the_type_named_send_a_job() {
    // `/^v/`: oras tags the SBOM `sbom-v1`, no image to copy.
    let (p, v1, q, images) = set_up("team/app:/^v/").await;
    let digest = &v1.digest;
    let only = format!("--referrers-type={DSSE_ENVELOPE}");
    let only = [only.as_str()];
    assert_eq!(q.jobs(&images, &only), 2);
    q.work();

    sign(&p, digest, "sig", COSIGN_SIMPLESIGNING).await;
    let subject = Subject::new(&v1.media_type, digest, v1.bytes.len());
    let sbom = oras_push(
        &p.src,
        "team/app",
        "sbom-v1",
        &subject,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    );
    let entry = referrer_descriptor(&p.src, "team/app", &sbom).await;
    write_fallback_index(&p.src, "team/app", digest, &[entry]).await;
    clear(&p);
    assert_eq!(q.jobs(&images, &only), 0);
    assert_eq!(p.src.count("GET", ".sig"), 1, "{:?}", p.src.requests());
    // Without the filter they are wanted.
    assert_eq!(q.jobs(&images, &[]), 1);

    let att = sign(&p, digest, "att", DSSE_ENVELOPE).await;
    assert_eq!(q.jobs(&images, &only), 1);
    q.work_copies(&p, 2, &att);
    assert_eq!(q.jobs(&images, &only), 0);
}
