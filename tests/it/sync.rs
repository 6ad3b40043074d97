//! `ferry sync` (the default command) end to end: every manifest kind copied byte-exact
//! (checked with skopeo on both sides), no-op second runs, `--force`, platform filters,
//! mounts, a corrupted blob, and the report files.

use serde_json::Value;
use support::{
    assert_same_raw, skopeo_inspect_raw, Fault, ImageSpec, Mode, Pair, Proxy, Registry, Workdir,
};

/// Seeds one of each manifest kind under `team/app`.
async fn seed_every_kind(src: &Registry) {
    src.seed_image(
        "team/app",
        "docker",
        &ImageSpec::with_layers(21, 2, 300 * 1024),
    )
    .await;
    src.seed_image(
        "team/app",
        "oci",
        &ImageSpec::with_layers(22, 1, 1024).oci(true),
    )
    .await;
    let platforms = [
        ("linux", "amd64", None),
        ("linux", "arm64", Some("v8")),
        ("linux", "arm", Some("v7")),
    ];
    src.seed_index("team/app", "list", &platforms, false).await;
    src.seed_index("team/app", "index", &platforms, true).await;
}

const TAGS: [&str; 4] = ["docker", "oci", "list", "index"];

/// The report's entries with this status.
fn with_status<'a>(report: &'a Value, status: &str) -> Vec<&'a Value> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_byte_exact_then_is_a_no_op() {
    let p = Pair::start(Mode::Http, Mode::Token);
    seed_every_kind(&p.src).await;
    let images = p.rule("team/app", "mirror/app");
    let (out, json) = p.sync_reporting(&images, &["--proc=3"]);
    out.assert_success();
    for tag in TAGS {
        p.assert_copied(&format!("team/app:{tag}"), &format!("mirror/app:{tag}"));
    }
    assert_eq!(json["totals"]["copied"], 4, "{json}");
    assert_eq!(json["totals"]["failed"], 0, "{json}");

    // Second run: HEADs only, no GET of a manifest, no upload, no manifest PUT.
    p.src.clear_requests();
    p.dst.clear_requests();
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    for reg in [&p.src, &p.dst] {
        let requests = reg.requests();
        assert_eq!(reg.count("GET", "/manifests/"), 0, "{requests:?}");
        assert_eq!(reg.count("PUT", "/"), 0, "{requests:?}");
        assert_eq!(reg.count("POST", "/"), 0, "{requests:?}");
        assert_eq!(reg.count("PATCH", "/"), 0, "{requests:?}");
    }
    assert_eq!(p.src.count("HEAD", "/manifests/"), 4);
    assert_eq!(p.dst.count("HEAD", "/manifests/"), 4);
    assert_eq!(json["totals"]["skipped"], 4, "{json}");

    // --force pushes again.
    p.dst.clear_requests();
    p.sync(&images, &["--force"]).assert_success();
    assert!(
        p.dst.count("PUT", "/manifests/") >= 4,
        "{:?}",
        p.dst.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_filters_rebuild_only_what_they_drop() {
    let p = Pair::start(Mode::Http, Mode::BasicTls);
    seed_every_kind(&p.src).await;
    let images = p.rule("team/app", "arm/app");
    let (out, json) = p.sync_reporting(&images, &["--arch", "arm64:v8", "--os=linux"]);
    out.assert_success();
    for tag in ["list", "index"] {
        let filtered: Value =
            serde_json::from_slice(&skopeo_inspect_raw(&p.dst, &format!("arm/app:{tag}"))).unwrap();
        let entries = filtered["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{filtered}");
        assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    }
    // The single-platform amd64 images do not match: skipped, not failed, nothing pushed.
    assert_eq!(with_status(&json, "skipped").len(), 2, "{json}");
    assert!(p.dst.fetch_manifest("arm/app", "docker").await.is_none());
    // A filter that keeps everything pushes the index unchanged.
    let images = p.rules("all.yaml", &[("team/app:list", "all/app")]);
    p.sync(&images, &["--arch=amd64,arm64,arm"])
        .assert_success();
    p.assert_copied("team/app:list", "all/app:list");
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_mounted_within_a_registry() {
    let reg = Registry::start(Mode::Token);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(31, 2, 4096))
        .await;
    let work = Workdir::trusting(&[&reg]);
    let images = work.images(format!("{0}/team/app:v1: {0}/copy/app\n", reg.host()));
    let (out, json) = work.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["blobs_mounted"], 3, "{json}");
    assert_eq!(json["totals"]["blobs_copied"], 0, "{json}");
    assert_eq!(
        reg.count("GET", "/blobs/sha256"),
        0,
        "mounted blobs are never downloaded"
    );
    assert_same_raw(&reg, "team/app:v1", &reg, "copy/app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_blob_fails_the_image_and_pushes_no_manifest() {
    let src = Registry::start(Mode::Http);
    let image = src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(41, 1, 64 * 1024))
        .await;
    src.seed_image("team/ok", "v1", &ImageSpec::with_layers(42, 1, 1024))
        .await;
    let layer = image.layer_digests[0].clone();
    let proxy = Proxy::passthrough(&src);
    proxy.set_hook(move |r: &support::ProxyRequest| {
        (r.method == "GET" && r.path.contains(&layer)).then_some(Fault::CorruptBody)
    });
    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[proxy.host(), dst.host()]);
    let images = work.images(format!(
        "{0}/team/app:v1: {1}/mirror/app\n{0}/team/ok:v1: {1}/mirror/ok\n",
        proxy.host(),
        dst.host()
    ));
    let (out, json) = work.sync_reporting(&images, &["--retries=1"]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("team/app:v1"),
        "the summary names the failed image\n{out}"
    );
    assert_eq!(
        dst.count("PUT", "/v2/mirror/app/manifests/"),
        0,
        "{:?}",
        dst.requests()
    );
    assert!(
        dst.fetch_manifest("mirror/ok", "v1").await.is_some(),
        "the other image still copied"
    );
    let failed = with_status(&json, "failed")[0].clone();
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains(&image.layer_digests[0]),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 2, "one retry round: {failed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn success_list_in_image_syncer_shape() {
    let p = Pair::start(Mode::Http, Mode::Http);
    p.src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(51, 1, 512))
        .await;
    let images = p.rule("team/app:v1", "mirror/app");
    let success = p.path().join("ok.json");
    let out = p.sync(
        &images,
        &[
            &format!("--output-success-images={}", success.display()),
            "--output-images-format=json",
        ],
    );
    out.assert_success();
    let json = support::read_json(&success);
    assert_eq!(
        json[p.src.image("team/app:v1")],
        serde_json::json!([p.dst.image("mirror/app:v1")]),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_source_tag_fails_once_without_retries() {
    let p = Pair::start(Mode::Http, Mode::Http);
    p.src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(61, 1, 512))
        .await;
    let images = p.rule("team/app:v1,nope", "mirror/app");
    let (out, json) = p.sync_reporting(&images, &["--retries=3"]);
    out.assert_code(1);
    let failed = with_status(&json, "failed")[0].clone();
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("team/app:nope does not exist"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert_eq!(json["totals"]["copied"], 1, "{json}");
    assert!(out.stderr.contains("team/app:nope"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_crosses_the_network_once_per_target_registry() {
    let p = Pair::start(Mode::Http, Mode::Token);
    p.src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(71, 2, 64 * 1024))
        .await;
    let images = p.images(format!(
        "{0}/team/app:v1: [{1}/one/app, {1}/two/app, {1}/three/app]\n",
        p.src.host(),
        p.dst.host()
    ));
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    // Three blobs (config and two layers): transferred into one repository, mounted into
    // the other two.
    assert_eq!(json["totals"]["blobs_copied"], 3, "{json}");
    assert_eq!(json["totals"]["blobs_mounted"], 6, "{json}");
    assert_eq!(
        p.src.count("GET", "/blobs/sha256:"),
        3,
        "{:?}",
        p.src.requests()
    );
    for repo in ["one/app", "two/app", "three/app"] {
        p.assert_copied("team/app:v1", &format!("{repo}:v1"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_cannot_find_anything_are_not_sent() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let (src, dst) = (&p.src, &p.dst);
    let v1 = ImageSpec::with_layers(81, 2, 64 * 1024);
    src.seed_image("team/app", "v1", &v1).await;
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    src.seed_index("team/app", "list", &platforms, false).await;
    let rule = |tags: &str| p.rule(&format!("team/app:{tags}"), "mirror/app");
    src.clear_requests();

    // Into a repository that does not exist yet: one tags/list tells ferry so, and then no
    // blob or child manifest is HEADed, and no source manifest either (a target lacks it).
    p.sync(&rule("v1,list"), &[]).assert_success();
    let requests = dst.requests();
    assert_eq!(dst.count("GET", "/mirror/app/tags/list"), 1, "{requests:?}");
    assert_eq!(dst.count("HEAD", "/blobs/"), 0, "{requests:?}");
    assert_eq!(dst.count("HEAD", "/manifests/"), 2, "{requests:?}");
    assert_eq!(src.count("HEAD", "/manifests/"), 0, "{:?}", src.requests());
    for tag in ["v1", "list"] {
        p.assert_copied(&format!("team/app:{tag}"), &format!("mirror/app:{tag}"));
    }

    // A new tag sharing v1's layers, into the repository that now exists: its blobs are
    // HEADed, and only the new config crosses.
    src.seed_image("team/app", "v2", &v1.clone().label("build", "2"))
        .await;
    src.clear_requests();
    dst.clear_requests();
    p.sync(&rule("v2"), &[]).assert_success();
    let requests = dst.requests();
    assert_eq!(dst.count("HEAD", "/blobs/"), 3, "{requests:?}");
    assert_eq!(dst.count("PUT", "/blobs/uploads/"), 1, "{requests:?}");
    assert_eq!(src.count("GET", "/blobs/"), 1, "{:?}", src.requests());
    p.assert_copied("team/app:v2", "mirror/app:v2");
}
