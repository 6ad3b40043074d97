//! `ferry sync` (the default command) end to end: every manifest kind copied byte-exact
//! (checked with skopeo on both sides), no-op second runs, `--force`, platform filters,
//! mounts, a corrupted blob, and the report files.

use serde_json::Value;
use support::{skopeo_inspect_raw, temp_dir, write_file, Fault, ImageSpec, Mode, Proxy, Registry};

use crate::{auth_file, read_json, sync};

/// A source with one of each manifest kind under `team/app`.
async fn source_with_every_kind() -> Registry {
    let src = Registry::start(Mode::Http);
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
    src
}

const TAGS: [&str; 4] = ["docker", "oci", "list", "index"];

#[tokio::test(flavor = "multi_thread")]
async fn copies_byte_exact_then_is_a_no_op() {
    let src = source_with_every_kind().await;
    let dst = Registry::start(Mode::Token);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!("{}/team/app: {}/mirror/app\n", src.host(), dst.host()),
    );
    let report = dir.path().join("report.json");
    let out = sync(
        &auth,
        &images,
        &["--proc=3", &format!("--report={}", report.display())],
    );
    out.assert_success();
    for tag in TAGS {
        let a = skopeo_inspect_raw(&src, &format!("team/app:{tag}"));
        let b = skopeo_inspect_raw(&dst, &format!("mirror/app:{tag}"));
        assert_eq!(a, b, "{tag}: manifests differ");
    }
    let json = read_json(&report);
    assert_eq!(json["totals"]["copied"], 4, "{json}");
    assert_eq!(json["totals"]["failed"], 0, "{json}");

    // Second run: HEADs only, no GET of a manifest, no upload, no manifest PUT.
    src.clear_requests();
    dst.clear_requests();
    let out = sync(&auth, &images, &[&format!("--report={}", report.display())]);
    out.assert_success();
    for reg in [&src, &dst] {
        let requests = reg.requests();
        assert_eq!(reg.count("GET", "/manifests/"), 0, "{requests:?}");
        assert_eq!(reg.count("PUT", "/"), 0, "{requests:?}");
        assert_eq!(reg.count("POST", "/"), 0, "{requests:?}");
        assert_eq!(reg.count("PATCH", "/"), 0, "{requests:?}");
    }
    assert_eq!(src.count("HEAD", "/manifests/"), 4);
    assert_eq!(dst.count("HEAD", "/manifests/"), 4);
    let json = read_json(&report);
    assert_eq!(json["totals"]["skipped"], 4, "{json}");

    // --force pushes again.
    dst.clear_requests();
    sync(&auth, &images, &["--force"]).assert_success();
    assert!(dst.count("PUT", "/manifests/") >= 4, "{:?}", dst.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_filters_rebuild_only_what_they_drop() {
    let src = source_with_every_kind().await;
    let dst = Registry::start(Mode::BasicTls);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!("{}/team/app: {}/arm/app\n", src.host(), dst.host()),
    );
    let report = dir.path().join("report.json");
    let out = sync(
        &auth,
        &images,
        &[
            "--arch",
            "arm64:v8",
            "--os=linux",
            &format!("--report={}", report.display()),
        ],
    );
    out.assert_success();
    for tag in ["list", "index"] {
        let filtered: Value =
            serde_json::from_slice(&skopeo_inspect_raw(&dst, &format!("arm/app:{tag}"))).unwrap();
        let entries = filtered["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{filtered}");
        assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    }
    // The single-platform amd64 images do not match: skipped, not failed, nothing pushed.
    let json = read_json(&report);
    let skipped: Vec<&Value> = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 2, "{json}");
    assert!(dst.fetch_manifest("arm/app", "docker").await.is_none());
    // A filter that keeps everything pushes the index unchanged.
    let images = write_file(
        dir.path(),
        "all.yaml",
        format!("{}/team/app:list: {}/all/app\n", src.host(), dst.host()),
    );
    sync(&auth, &images, &["--arch=amd64,arm64,arm"]).assert_success();
    assert_eq!(
        skopeo_inspect_raw(&src, "team/app:list"),
        skopeo_inspect_raw(&dst, "all/app:list")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_mounted_within_a_registry() {
    let reg = Registry::start(Mode::Token);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(31, 2, 4096))
        .await;
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&reg]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!("{0}/team/app:v1: {0}/copy/app\n", reg.host()),
    );
    let report = dir.path().join("report.json");
    sync(&auth, &images, &[&format!("--report={}", report.display())]).assert_success();
    let json = read_json(&report);
    assert_eq!(json["totals"]["blobs_mounted"], 3, "{json}");
    assert_eq!(json["totals"]["blobs_copied"], 0, "{json}");
    assert_eq!(
        reg.count("GET", "/blobs/sha256"),
        0,
        "mounted blobs are never downloaded"
    );
    assert_eq!(
        skopeo_inspect_raw(&reg, "team/app:v1"),
        skopeo_inspect_raw(&reg, "copy/app:v1")
    );
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
    let dir = temp_dir();
    let auth = write_file(
        dir.path(),
        "auth.yaml",
        format!(
            "{}: {{insecure: true}}\n{}: {{insecure: true}}\n",
            proxy.host(),
            dst.host()
        ),
    );
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!(
            "{0}/team/app:v1: {1}/mirror/app\n{0}/team/ok:v1: {1}/mirror/ok\n",
            proxy.host(),
            dst.host()
        ),
    );
    let report = dir.path().join("report.json");
    let out = sync(
        &auth,
        &images,
        &["--retries=1", &format!("--report={}", report.display())],
    );
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
    let json = read_json(&report);
    let failed = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "failed")
        .unwrap()
        .clone();
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
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(51, 1, 512))
        .await;
    let dst = Registry::start(Mode::Http);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!("{}/team/app:v1: {}/mirror/app\n", src.host(), dst.host()),
    );
    let success = dir.path().join("ok.json");
    let out = sync(
        &auth,
        &images,
        &[
            &format!("--output-success-images={}", success.display()),
            "--output-images-format=json",
        ],
    );
    out.assert_success();
    let json = read_json(&success);
    assert_eq!(
        json[format!("{}/team/app:v1", src.host())],
        serde_json::json!([format!("{}/mirror/app:v1", dst.host())]),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_source_tag_fails_once_without_retries() {
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(61, 1, 512))
        .await;
    let dst = Registry::start(Mode::Http);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!(
            "{}/team/app:v1,nope: {}/mirror/app\n",
            src.host(),
            dst.host()
        ),
    );
    let report = dir.path().join("report.json");
    let out = sync(
        &auth,
        &images,
        &["--retries=3", &format!("--report={}", report.display())],
    );
    out.assert_code(1);
    let json = read_json(&report);
    let failed = json["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "failed")
        .unwrap()
        .clone();
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
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(71, 2, 64 * 1024))
        .await;
    let dst = Registry::start(Mode::Token);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let images = write_file(
        dir.path(),
        "images.yaml",
        format!(
            "{0}/team/app:v1: [{1}/one/app, {1}/two/app, {1}/three/app]\n",
            src.host(),
            dst.host()
        ),
    );
    let report = dir.path().join("report.json");
    sync(&auth, &images, &[&format!("--report={}", report.display())]).assert_success();
    let json = read_json(&report);
    // Three blobs (config and two layers): transferred into one repository, mounted into
    // the other two.
    assert_eq!(json["totals"]["blobs_copied"], 3, "{json}");
    assert_eq!(json["totals"]["blobs_mounted"], 6, "{json}");
    assert_eq!(
        src.count("GET", "/blobs/sha256:"),
        3,
        "{:?}",
        src.requests()
    );
    for repo in ["one/app", "two/app", "three/app"] {
        assert_eq!(
            skopeo_inspect_raw(&src, "team/app:v1"),
            skopeo_inspect_raw(&dst, &format!("{repo}:v1"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_cannot_find_anything_are_not_sent() {
    let src = Registry::start(Mode::Http);
    let v1 = ImageSpec::with_layers(81, 2, 64 * 1024);
    src.seed_image("team/app", "v1", &v1).await;
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    src.seed_index("team/app", "list", &platforms, false).await;
    let dst = Registry::start(Mode::Http);
    let dir = temp_dir();
    let auth = auth_file(dir.path(), &[&src, &dst]);
    let rule = |tags: &str| {
        write_file(
            dir.path(),
            "images.yaml",
            format!(
                "{}/team/app:{tags}: {}/mirror/app\n",
                src.host(),
                dst.host()
            ),
        )
    };
    src.clear_requests();

    // Into a repository that does not exist yet: one tags/list tells ferry so, and then no
    // blob or child manifest is HEADed, and no source manifest either (a target lacks it).
    sync(&auth, &rule("v1,list"), &[]).assert_success();
    let requests = dst.requests();
    assert_eq!(dst.count("GET", "/mirror/app/tags/list"), 1, "{requests:?}");
    assert_eq!(dst.count("HEAD", "/blobs/"), 0, "{requests:?}");
    assert_eq!(dst.count("HEAD", "/manifests/"), 2, "{requests:?}");
    assert_eq!(src.count("HEAD", "/manifests/"), 0, "{:?}", src.requests());
    for tag in ["v1", "list"] {
        assert_eq!(
            skopeo_inspect_raw(&src, &format!("team/app:{tag}")),
            skopeo_inspect_raw(&dst, &format!("mirror/app:{tag}"))
        );
    }

    // A new tag sharing v1's layers, into the repository that now exists: its blobs are
    // HEADed, and only the new config crosses.
    src.seed_image("team/app", "v2", &v1.clone().label("build", "2"))
        .await;
    src.clear_requests();
    dst.clear_requests();
    sync(&auth, &rule("v2"), &[]).assert_success();
    let requests = dst.requests();
    assert_eq!(dst.count("HEAD", "/blobs/"), 3, "{requests:?}");
    assert_eq!(dst.count("PUT", "/blobs/uploads/"), 1, "{requests:?}");
    assert_eq!(src.count("GET", "/blobs/"), 1, "{:?}", src.requests());
    assert_eq!(
        skopeo_inspect_raw(&src, "team/app:v2"),
        skopeo_inspect_raw(&dst, "mirror/app:v2")
    );
}
