//! One source read for several target registries: three real target registries (one over
//! TLS with Basic auth), each source blob GET counted in the source's access log. The fault
//! proxy stands in front of one target where a real registry cannot cut an upload midway,
//! and in front of the source where it cannot serve a damaged blob.

use support::{
    auth_yaml, fail_first, insecure_auth_yaml, ImageSpec, Mode, Proxy, ProxyRequest, Registry,
    SeededImage, Workdir,
};

/// Every blob of `image`: config, then layers.
fn blobs(image: &SeededImage) -> Vec<String> {
    std::iter::once(image.config_digest.clone())
        .chain(image.layer_digests.iter().cloned())
        .collect()
}

/// `images.yaml` sending `SOURCE/repo:v1` to `mirror/repo` on each of `targets` (hosts).
fn rules(work: &Workdir, source: &str, repos: &[&str], targets: &[String]) -> std::path::PathBuf {
    let yaml: String = repos
        .iter()
        .map(|repo| {
            let to: Vec<String> = targets
                .iter()
                .map(|t| format!("{t}/mirror/{repo}"))
                .collect();
            format!("{source}/team/{repo}:v1: [{}]\n", to.join(", "))
        })
        .collect();
    work.images(yaml)
}

fn is_upload(r: &ProxyRequest) -> bool {
    matches!(r.method.as_str(), "PUT" | "PATCH") && r.path.contains("/blobs/uploads/")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_blob_is_read_once_for_three_target_registries() {
    let src = Registry::start(Mode::Http);
    // Two images sharing every blob: still one read each.
    let spec = ImageSpec::with_layers(1901, 3, 200 * 1024);
    let image = src.seed_image("team/app", "v1", &spec).await;
    src.seed_image("team/other", "v1", &spec).await;
    let targets = [
        Registry::start(Mode::Http),
        Registry::start(Mode::BasicTls),
        Registry::start(Mode::BasicHttp),
    ];
    let work = Workdir::trusting(&[&src, &targets[0], &targets[1], &targets[2]]);
    let hosts: Vec<String> = targets.iter().map(Registry::host).collect();
    let images = rules(&work, &src.host(), &["app", "other"], &hosts);
    src.clear_requests();
    let (out, report) = work.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(report["totals"]["copied"], 2, "{report}");
    for blob in blobs(&image) {
        assert_eq!(
            src.count("GET", &format!("/blobs/{blob}")),
            1,
            "{blob}: {:?}",
            src.requests()
        );
    }
    for target in &targets {
        for repo in ["app", "other"] {
            support::assert_same_raw(
                &src,
                &format!("team/{repo}:v1"),
                target,
                &format!("mirror/{repo}:v1"),
            );
        }
        for blob in blobs(&image) {
            assert!(target.has_blob("mirror/app", &blob).await, "{blob}");
        }
    }
}

/// The proxy resets the first upload to one target after 1000 bytes of its body.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_cut_mid_upload_is_retried_alone() {
    let src = Registry::start(Mode::Http);
    let image = src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(1911, 2, 300 * 1024),
        )
        .await;
    let (plain, behind, tls) = (
        Registry::start(Mode::Http),
        Registry::start(Mode::Http),
        Registry::start(Mode::BasicTls),
    );
    let proxy = Proxy::start(
        &behind,
        fail_first(1, is_upload, support::Fault::ResetMidUpload { after: 1000 }),
    );
    let work =
        Workdir::with_auth(auth_yaml(&[&src, &plain, &tls]) + &insecure_auth_yaml(&[proxy.host()]));
    let hosts = [plain.host(), proxy.host(), tls.host()];
    let images = rules(&work, &src.host(), &["app"], &hosts);
    src.clear_requests();
    work.sync(&images, &[]).assert_success();
    for target in [&plain, &behind, &tls] {
        support::assert_same_raw(&src, "team/app:v1", target, "mirror/app:v1");
    }
    // One read for all three, and one more for the target that was cut off, alone.
    let reads: usize = blobs(&image)
        .iter()
        .map(|blob| src.count("GET", &format!("/blobs/{blob}")))
        .sum();
    assert_eq!(reads, blobs(&image).len() + 1, "{:?}", src.requests());
}

/// The proxy damages every GET of one layer at the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_source_blob_is_committed_nowhere() {
    let src = Registry::start(Mode::Http);
    let image = src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(1921, 2, 100 * 1024),
        )
        .await;
    let damaged = image.layer_digests[1].clone();
    let proxy = Proxy::start(&src, {
        let damaged = damaged.clone();
        move |r: &ProxyRequest| {
            (r.method == "GET" && r.path.contains(&format!("/blobs/{damaged}")))
                .then_some(support::Fault::CorruptBody)
        }
    });
    let targets = [
        Registry::start(Mode::Http),
        Registry::start(Mode::Http),
        Registry::start(Mode::BasicTls),
    ];
    let work = Workdir::with_auth(
        auth_yaml(&[&targets[0], &targets[1], &targets[2]]) + &insecure_auth_yaml(&[proxy.host()]),
    );
    let hosts: Vec<String> = targets.iter().map(Registry::host).collect();
    let images = rules(&work, &proxy.host(), &["app"], &hosts);
    let (out, report) = work.sync_reporting(&images, &["--retries=0"]);
    out.assert_code(1);
    assert_eq!(report["totals"]["failed"], 1, "{report}");
    assert_eq!(report["images"][0]["kind"], "digest_mismatch", "{report}");
    for target in &targets {
        assert!(!target.has_blob("mirror/app", &damaged).await);
        assert!(target.fetch_manifest("mirror/app", "v1").await.is_none());
    }
}
