//! Immutable tags (`--immutable-tags`, a rule's `immutable:`): a warm run spends no request
//! on a tag declared immutable that the target lists, counted from the real registries'
//! access logs; a tag the target lacks is still copied; a re-pushed release tag is not
//! noticed (the documented trade-off) until `--force` copies it.

use support::{ImageSpec, Mode, Pair};

/// Manifest requests (HEAD or GET) a registry answered for `repo`'s `tag`.
fn manifest_requests(registry: &support::Registry, repo: &str, tag: &str) -> usize {
    registry.count("*", &format!("/v2/{repo}/manifests/{tag}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_run_asks_nothing_about_immutable_tags_on_the_target() {
    let p = Pair::start(Mode::Http, Mode::BasicHttp);
    let (src, dst) = (&p.src, &p.dst);
    for (seed, tag) in [(1, "v1.0.0"), (2, "v1.1.0"), (3, "v2.0.0"), (4, "latest")] {
        src.seed_image("rel/app", tag, &ImageSpec::with_layers(700 + seed, 1, 1024))
            .await;
    }
    let images = p.rule("rel/app", "mirror/app");
    let flag = ["--immutable-tags=/^v\\d/"];
    p.sync(&images, &flag).assert_success();
    for tag in ["v1.0.0", "v1.1.0", "v2.0.0", "latest"] {
        p.assert_copied(&format!("rel/app:{tag}"), &format!("mirror/app:{tag}"));
    }

    // Warm: one listing per repository on each side; only `latest` is HEADed.
    src.clear_requests();
    dst.clear_requests();
    let (out, report) = p.sync_reporting(&images, &flag);
    out.assert_success();
    assert_eq!(report["totals"]["skipped"], 4, "{report}");
    for tag in ["v1.0.0", "v1.1.0", "v2.0.0"] {
        assert_eq!(
            manifest_requests(src, "rel/app", tag),
            0,
            "{:?}",
            src.requests()
        );
        assert_eq!(
            manifest_requests(dst, "mirror/app", tag),
            0,
            "{:?}",
            dst.requests()
        );
    }
    assert_eq!(manifest_requests(src, "rel/app", "latest"), 1);
    assert_eq!(manifest_requests(dst, "mirror/app", "latest"), 1);
    assert_eq!(
        dst.count("GET", "/v2/mirror/app/tags/list"),
        1,
        "{:?}",
        dst.requests()
    );
    assert_eq!(dst.count("PUT", "/"), 0);

    // The same from the rule's long form, without the flag.
    let long_form = p.work.write(
        "long.yaml",
        format!(
            "{}:\n  to: {}\n  immutable: ^v\\d\n",
            src.image("rel/app"),
            dst.image("mirror/app")
        ),
    );
    src.clear_requests();
    dst.clear_requests();
    p.sync(&long_form, &[]).assert_success();
    assert_eq!(
        manifest_requests(src, "rel/app", "v1.0.0"),
        0,
        "{:?}",
        src.requests()
    );
    assert_eq!(
        manifest_requests(dst, "mirror/app", "v2.0.0"),
        0,
        "{:?}",
        dst.requests()
    );
    assert_eq!(manifest_requests(dst, "mirror/app", "latest"), 1);

    // A tag the target lacks is copied as usual.
    let v2 = dst.fetch_manifest("mirror/app", "v2.0.0").await.unwrap();
    dst.delete_manifest("mirror/app", &v2.digest).await;
    p.sync(&images, &flag).assert_success();
    p.assert_copied("rel/app:v2.0.0", "mirror/app:v2.0.0");

    // A release tag pushed again at the source is not noticed (the trade-off) ...
    let moved = src
        .seed_image("rel/app", "v1.0.0", &ImageSpec::with_layers(799, 1, 1024))
        .await;
    p.sync(&images, &flag).assert_success();
    let kept = dst.fetch_manifest("mirror/app", "v1.0.0").await.unwrap();
    assert_ne!(kept.digest, moved.digest);
    // ... until --force copies it.
    dst.clear_requests();
    p.sync(&images, &["--immutable-tags=^v\\d", "--force"])
        .assert_success();
    p.assert_copied("rel/app:v1.0.0", "mirror/app:v1.0.0");
    assert!(dst.count("PUT", "/v2/mirror/app/manifests/v1.0.0") >= 1);
}
