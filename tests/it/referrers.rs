//! Signatures, SBOMs and attestations travel with their images (issue 15). The artifacts
//! are made by real clients' rules: an SBOM pushed by the `oras` Python SDK with a
//! `subject`, listed in the referrers tag schema's `sha256-<hex>` index (distribution 2.8
//! has no referrers API); cosign-style `.sig`/`.att` tags with cosign's media types and
//! annotations. After `ferry sync` skopeo reads every referrer byte-identical on the target,
//! whose fallback index lists them all, merged with what it had. A referrers-API source is
//! a [`referrers_api_proxy`] in front of a real registry (2.8 cannot serve the API), which
//! answers from that registry's own stored manifests. Warm runs are counted from the access
//! logs; bad referrers are named in the report while their images are still copied.

use crate::planner_referrers::QueueRun;
use ::ferry::error::Kind;
use ::ferry::image::{ImageOptions, PlannedImage, PushedReferrer};
use ::ferry::reference::Reference;
use ::ferry::report::Status;
use serde_json::Value;
use support::referrers::{
    fallback_entries, fallback_tag, oras_push, push_artifact_by_digest, push_cosign_tag,
    referrer_descriptor, referrers_api_proxy, write_fallback_index, Subject, COSIGN_SIMPLESIGNING,
    DSSE_ENVELOPE,
};

use support::{
    assert_same_raw, free_port, sha256_digest, ImageSpec, Mode, Options, Pair, Registry, Workdir,
    OCI_INDEX,
};

const SBOM_TYPE: &str = "application/spdx+json";

/// The digests a fallback index lists.
fn digests(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Requests to `reg` with this method whose path contains `path`, for messages.
fn summary(reg: &Registry) -> Vec<String> {
    reg.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Asserts `reg` was sent `expected` requests with `method` (`*`: any) and `path` in theirs.
#[track_caller]
fn assert_asked(reg: &Registry, method: &str, path: &str, expected: usize) {
    let asked = reg.count(method, path);
    assert_eq!(asked, expected, "{method} {path}: {:?}", summary(reg));
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_and_sboms_travel_with_their_image() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let image = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(51, 1, 2048).oci(true),
        )
        .await;
    let subject = Subject::new(&image.media_type, &image.digest, image.bytes.len());
    let sbom = oras_push(
        &p.src,
        "team/app",
        "sbom-v1",
        &subject,
        SBOM_TYPE,
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    );
    let sbom_entry = referrer_descriptor(&p.src, "team/app", &sbom).await;
    write_fallback_index(&p.src, "team/app", &image.digest, &[sbom_entry]).await;
    let sig_tag = format!("{}.sig", fallback_tag(&image.digest));
    let att_tag = format!("{}.att", fallback_tag(&image.digest));
    push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#],
    )
    .await;
    push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "att",
        DSSE_ENVELOPE,
        &[r#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}"#],
    )
    .await;
    // A referrer the target has already (pushed there by someone else) must stay listed.
    let theirs = push_artifact_by_digest(
        &p.dst,
        "mirror/app",
        &subject,
        "application/vnd.example.theirs",
        b"theirs",
    )
    .await;
    write_fallback_index(
        &p.dst,
        "mirror/app",
        &image.digest,
        std::slice::from_ref(&theirs),
    )
    .await;

    // A tag regex selects v1 only: its referrers still come along, and none of the
    // referrer tags is copied as an image of its own.
    let images = p.work.images(format!(
        "\"{}\": {}\n",
        p.src.image("team/app:/^v/"),
        p.dst.image("mirror/app")
    ));
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["images"], 1, "{json}");
    assert_eq!(json["totals"]["copied"], 1, "{json}");
    assert_eq!(json["totals"]["referrers_copied"], 3, "{json}");
    assert!(
        json["images"][0].get("referrer_problems").is_none(),
        "{json}"
    );
    p.assert_copied("team/app:v1", "mirror/app:v1");
    p.assert_copied(
        &format!("team/app:{sig_tag}"),
        &format!("mirror/app:{sig_tag}"),
    );
    p.assert_copied(
        &format!("team/app:{att_tag}"),
        &format!("mirror/app:{att_tag}"),
    );
    p.assert_copied(&format!("team/app@{sbom}"), &format!("mirror/app@{sbom}"));
    let listed = digests(
        &fallback_entries(&p.dst, "mirror/app", &image.digest)
            .await
            .unwrap(),
    );
    assert!(listed.contains(&sbom), "{listed:?}");
    assert!(
        listed.contains(&theirs["digest"].as_str().unwrap().to_string()),
        "the target's own referrer stays listed: {listed:?}"
    );
    assert!(
        !p.dst
            .list_tags("mirror/app")
            .await
            .contains(&"sbom-v1".to_string()),
        "the SBOM's own tag is not one the rule selects"
    );

    // Warm: what referrers cost on top of an image's HEADs.
    p.src.clear_requests();
    p.dst.clear_requests();
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["skipped"], 1, "{json}");
    assert_eq!(json["totals"]["referrers_copied"], 0, "{json}");
    for reg in [&p.src, &p.dst] {
        assert_eq!(reg.count("PUT", "/"), 0, "{:?}", summary(reg));
        assert_eq!(reg.count("POST", "/"), 0, "{:?}", summary(reg));
    }
    // Source: tags/list (the planner's, reused), HEAD v1; then one referrers API probe for
    // the registry, a HEAD of each referrer tag the listing shows (.sig, .att, the
    // fallback index), and, as the target's index holds more than the source's (the
    // merge), one GET of the source's index.
    assert_eq!(p.src.count("GET", "/tags/list"), 1, "{:?}", summary(&p.src));
    assert_eq!(
        p.src.count("GET", "/referrers/"),
        1,
        "{:?}",
        summary(&p.src)
    );
    assert_eq!(
        p.src.count("HEAD", "/manifests/"),
        4,
        "{:?}",
        summary(&p.src)
    );
    assert_eq!(
        p.src.count("GET", "/manifests/"),
        1,
        "{:?}",
        summary(&p.src)
    );
    // (and the `/v2/` ping)
    assert_eq!(p.src.requests().len(), 8, "{:?}", summary(&p.src));
    // Target: the ping, HEAD v1; the API probe; HEAD .sig and .att; GET of the index.
    assert_eq!(
        p.dst.count("GET", "/referrers/"),
        1,
        "{:?}",
        summary(&p.dst)
    );
    assert_eq!(
        p.dst.count("HEAD", "/manifests/"),
        3,
        "{:?}",
        summary(&p.dst)
    );
    assert_eq!(
        p.dst.count("GET", "/manifests/"),
        1,
        "{:?}",
        summary(&p.dst)
    );
    assert_eq!(p.dst.requests().len(), 6, "{:?}", summary(&p.dst));

    // --referrers=false asks nothing about them.
    p.src.clear_requests();
    p.dst.clear_requests();
    p.sync(&images, &["--referrers=false"]).assert_success();
    assert_eq!(p.src.count("*", "/referrers/"), 0);
    assert_eq!(
        p.src.count("HEAD", "/manifests/"),
        1,
        "{:?}",
        summary(&p.src)
    );
    assert_eq!(p.src.requests().len(), 3, "{:?}", summary(&p.src));
    assert_eq!(p.dst.requests().len(), 2, "{:?}", summary(&p.dst));

    // A signature added to the mirrored image is copied on the next run.
    let resigned = push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[
            r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#,
            r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":{"by":"ci"}}"#,
        ],
    )
    .await;
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["referrers_copied"], 1, "{json}");
    assert_eq!(json["images"][0]["status"], "copied", "{json}");
    let copied = p.dst.fetch_manifest("mirror/app", &sig_tag).await.unwrap();
    assert_eq!(copied.digest, resigned);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referrers_api_source_and_an_index_with_referrers_on_a_child() {
    let src = Registry::start(Mode::Http);
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    let index = src.seed_index("team/app", "multi", &platforms, true).await;
    let top = Subject::new(OCI_INDEX, &index.digest, index.bytes.len());
    let child = &index.children[0];
    let on_child = Subject::new(&child.media_type, &child.digest, child.bytes.len());
    // Pushed by digest only, with no fallback index: only the API finds them.
    let sbom = push_artifact_by_digest(&src, "team/app", &top, SBOM_TYPE, b"sbom").await;
    let sig = push_artifact_by_digest(
        &src,
        "team/app",
        &top,
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        b"bundle",
    )
    .await;
    let provenance = push_artifact_by_digest(
        &src,
        "team/app",
        &on_child,
        "application/vnd.in-toto+json",
        b"provenance",
    )
    .await;
    let digest_of = |d: &Value| d["digest"].as_str().unwrap().to_string();
    let proxy = referrers_api_proxy(&src);
    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[proxy.host(), dst.host()]);
    let images = work.images(format!(
        "{}: {}\n",
        proxy.image("team/app:multi"),
        dst.image("mirror/app:multi")
    ));
    let (out, json) = work.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["referrers_copied"], 3, "{json}");
    for artifact in [&sbom, &sig, &provenance] {
        let digest = digest_of(artifact);
        assert_same_raw(
            &src,
            &format!("team/app@{digest}"),
            &dst,
            &format!("mirror/app@{digest}"),
        );
    }
    // The target has no referrers API: ferry keeps its fallback indexes.
    let on_top = digests(
        &fallback_entries(&dst, "mirror/app", &index.digest)
            .await
            .unwrap(),
    );
    assert_eq!(on_top.len(), 2, "{on_top:?}");
    assert!(on_top.contains(&digest_of(&sbom)) && on_top.contains(&digest_of(&sig)));
    let on_child_listed = digests(
        &fallback_entries(&dst, "mirror/app", &child.digest)
            .await
            .unwrap(),
    );
    assert_eq!(on_child_listed, [digest_of(&provenance)]);
    // Each one's descriptor as the API listed it, artifactType included.
    let entries = fallback_entries(&dst, "mirror/app", &index.digest)
        .await
        .unwrap();
    assert!(
        entries.iter().all(|e| e["artifactType"].is_string()),
        "{entries:?}"
    );

    // Warm: one referrers GET at the source for the image.
    proxy.clear_requests();
    dst.clear_requests();
    work.sync(&images, &[]).assert_success();
    assert_eq!(
        proxy.count("GET", "/referrers/"),
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(proxy.count("PUT", "/"), 0);
    assert_eq!(dst.count("PUT", "/"), 0, "{:?}", summary(&dst));

    // --referrers-type: only that type, into another repository.
    let filtered = work.images(format!(
        "{}: {}\n",
        proxy.image("team/app:multi"),
        dst.image("filtered/app:multi")
    ));
    let (out, json) =
        work.sync_reporting_with(&filtered, &[&format!("--referrers-type={SBOM_TYPE}")], &[]);
    out.assert_success();
    assert_eq!(json["totals"]["referrers_copied"], 1, "{json}");
    assert_eq!(
        digests(
            &fallback_entries(&dst, "filtered/app", &index.digest)
                .await
                .unwrap()
        ),
        [digest_of(&sbom)]
    );
    assert!(fallback_entries(&dst, "filtered/app", &child.digest)
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_referrers_are_named_and_their_images_still_copied() {
    let p = Pair::start(Mode::Http, Mode::Http);
    // v1's fallback tag holds an image, not an index.
    let one = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(61, 1, 512).oci(true),
        )
        .await;
    p.src
        .seed_image(
            "team/app",
            &fallback_tag(&one.digest),
            &ImageSpec::with_layers(62, 1, 512).oci(true),
        )
        .await;
    // v2: a referrer A, whose referrer B's fallback index lists A again (a loop), and a
    // listed referrer that is missing at the source.
    let two = p
        .src
        .seed_image(
            "team/app",
            "v2",
            &ImageSpec::with_layers(63, 1, 512).oci(true),
        )
        .await;
    let subject = Subject::new(&two.media_type, &two.digest, two.bytes.len());
    let a = push_artifact_by_digest(&p.src, "team/app", &subject, SBOM_TYPE, b"a").await;
    let a_digest = a["digest"].as_str().unwrap().to_string();
    let on_a = Subject::new(
        &two.media_type,
        &a_digest,
        a["size"].as_u64().unwrap() as usize,
    );
    let b = push_artifact_by_digest(&p.src, "team/app", &on_a, SBOM_TYPE, b"b").await;
    let b_digest = b["digest"].as_str().unwrap().to_string();
    // Listed, then deleted (2.8 refuses an index naming a manifest it does not have).
    let gone = push_artifact_by_digest(&p.src, "team/app", &subject, SBOM_TYPE, b"gone").await;
    write_fallback_index(&p.src, "team/app", &two.digest, &[a.clone(), gone.clone()]).await;
    p.src
        .delete_manifest("team/app", gone["digest"].as_str().unwrap())
        .await;
    write_fallback_index(&p.src, "team/app", &a_digest, std::slice::from_ref(&b)).await;
    write_fallback_index(&p.src, "team/app", &b_digest, std::slice::from_ref(&a)).await;

    let images = p.rule("team/app", "mirror/app");
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(
        json["totals"]["images"], 2,
        "referrer tags are no images: {json}"
    );
    assert_eq!(json["totals"]["copied"], 2, "{json}");
    p.assert_copied("team/app:v1", "mirror/app:v1");
    p.assert_copied("team/app:v2", "mirror/app:v2");
    let problems = |i: usize| -> String {
        json["images"][i]["referrer_problems"]
            .as_array()
            .map(|p| format!("{p:?}"))
            .unwrap_or_default()
    };
    assert!(problems(0).contains("is not an index"), "{json}");
    assert!(problems(1).contains("loop"), "{json}");
    assert!(problems(1).contains("missing at the source"), "{json}");
    assert!(out.stderr.contains("referrers of"), "{out}");
    for digest in [&a_digest, &b_digest] {
        p.assert_copied(
            &format!("team/app@{digest}"),
            &format!("mirror/app@{digest}"),
        );
    }
}

/// `referrers: false` in a rule's long form copies none of its images' referrers (nor their
/// referrer tags as images), while another rule's image in the same run gets its signature.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_turns_referrers_off_for_its_images_only() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let mut sig_tags = Vec::new();
    for (repo, seed) in [("team/quiet", 61), ("team/signed", 62)] {
        let image = p
            .src
            .seed_image(repo, "v1", &ImageSpec::with_layers(seed, 1, 512).oci(true))
            .await;
        push_cosign_tag(
            &p.src,
            repo,
            &image.digest,
            "sig",
            COSIGN_SIMPLESIGNING,
            &[r#"{"critical":{"identity":{"docker-reference":"team"}},"optional":null}"#],
        )
        .await;
        sig_tags.push(format!("{}.sig", fallback_tag(&image.digest)));
    }
    let images = p.work.images(format!(
        "{}:\n  to: {}\n  referrers: false\n{}: {}\n",
        p.src.image("team/quiet"),
        p.dst.image("mirror/quiet"),
        p.src.image("team/signed"),
        p.dst.image("mirror/signed"),
    ));
    p.src.clear_requests();
    let (out, json) = p.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["copied"], 2, "{json}");
    assert_eq!(json["totals"]["referrers_copied"], 1, "{json}");
    p.assert_copied("team/quiet:v1", "mirror/quiet:v1");
    p.assert_copied("team/signed:v1", "mirror/signed:v1");
    assert_eq!(p.dst.list_tags("mirror/quiet").await, ["v1"]);
    p.assert_copied(
        &format!("team/signed:{}", sig_tags[1]),
        &format!("mirror/signed:{}", sig_tags[1]),
    );
    // The quiet rule's image is never asked about its referrers.
    let asked: Vec<String> = summary(&p.src)
        .into_iter()
        .filter(|r| r.contains("team/quiet") && r.contains(".sig"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

/// `ferry plan --queue-url` (SQS is moto) notices a signature or SBOM added to an image
/// already mirrored: its targets are in sync, yet the planner enqueues a job because the
/// listing shows referrer tags of its digest that the target lacks; `ferry worker` copies
/// them. An image without referrer tags costs the planner no referrer request, and a target
/// fallback index that merged a referrer of its own, listing every source entry, is in sync.
#[tokio::test(flavor = "multi_thread")]
async fn the_planner_enqueues_a_signature_added_after_mirroring() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let image = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(71, 1, 512).oci(true),
        )
        .await;
    p.src
        .seed_image(
            "team/app",
            "v2",
            &ImageSpec::with_layers(72, 1, 512).oci(true),
        )
        .await;
    let images = p.work.images(format!(
        "\"{}\": {}\n",
        p.src.image("team/app:/^v/"),
        p.dst.image("mirror/app")
    ));
    let queue = QueueRun::start(p.work.auth()).await;
    let plan = || queue.jobs(&images, &[]);
    let work = || queue.work();
    assert_eq!(plan(), 2);
    work();
    p.assert_copied("team/app:v1", "mirror/app:v1");

    // Warm, nothing signed: no referrer tag asked for; the one referrers API probe (404:
    // distribution 2.8 has none) and nothing at the target.
    p.src.clear_requests();
    p.dst.clear_requests();
    assert_eq!(plan(), 0);
    for reg in [&p.src, &p.dst] {
        assert_eq!(reg.count("*", "sha256-"), 0, "{:?}", summary(reg));
    }
    assert_asked(&p.src, "GET", "/referrers/", 1);
    assert_asked(&p.dst, "*", "/referrers/", 0);

    // A signature pushed after the mirror: enqueued, copied, then in sync.
    let sig_tag = format!("{}.sig", fallback_tag(&image.digest));
    push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#],
    )
    .await;
    assert_eq!(plan(), 1);
    let out = work();
    assert!(out.stderr.contains("1 jobs succeeded, 0 failed"), "{out}");
    p.assert_copied(
        &format!("team/app:{sig_tag}"),
        &format!("mirror/app:{sig_tag}"),
    );
    p.src.clear_requests();
    p.dst.clear_requests();
    assert_eq!(plan(), 0);
    // One HEAD of the `.sig` tag on each side.
    assert_eq!(p.src.count("HEAD", ".sig"), 1, "{:?}", summary(&p.src));
    assert_eq!(p.dst.count("HEAD", ".sig"), 1, "{:?}", summary(&p.dst));

    // A re-signature (the `.sig` tag at a new digest) is noticed too.
    push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[
            r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#,
            r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":{"by":"ci"}}"#,
        ],
    )
    .await;
    assert_eq!(plan(), 1);
    work();
    p.assert_copied(
        &format!("team/app:{sig_tag}"),
        &format!("mirror/app:{sig_tag}"),
    );

    // An SBOM attached with oras (listed in the fallback index): enqueued and copied.
    let subject = Subject::new(&image.media_type, &image.digest, image.bytes.len());
    let sbom = oras_push(
        &p.src,
        "team/app",
        "sbom-v1",
        &subject,
        SBOM_TYPE,
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    );
    let sbom_entry = referrer_descriptor(&p.src, "team/app", &sbom).await;
    write_fallback_index(
        &p.src,
        "team/app",
        &image.digest,
        std::slice::from_ref(&sbom_entry),
    )
    .await;
    assert_eq!(plan(), 1);
    work();
    p.assert_copied(&format!("team/app@{sbom}"), &format!("mirror/app@{sbom}"));
    assert_eq!(plan(), 0);

    // The target's index also lists a referrer of its own: at another digest than the
    // source's, but holding every source entry, so still in sync.
    let theirs = push_artifact_by_digest(
        &p.dst,
        "mirror/app",
        &subject,
        "application/vnd.example.theirs",
        b"theirs",
    )
    .await;
    write_fallback_index(&p.dst, "mirror/app", &image.digest, &[theirs, sbom_entry]).await;
    assert_eq!(plan(), 0);
}

/// Webhooks (part 5): a real docker-registry notifies `ferry serve` of every push; a
/// cosign signature pushed for an image a regex rule already mirrored (its `.sig` tag no
/// image of its own) becomes a job for the subject by digest, which copies the signature.
/// `ferry serve` mirroring a notifying source's `team/app` tags matching `^v` to
/// `mirror/app`, with `team/app:v1` (an OCI image) pushed and copied already.
struct Mirrored {
    src: Registry,
    dst: Registry,
    served: crate::webhook::Served,
    image: support::SeededImage,
    _work: Workdir,
}

async fn mirrored_through_serve(seed: u64) -> Mirrored {
    let port = free_port();
    let src = Registry::start_with(
        Mode::Http,
        Options {
            notify: Some((
                format!("http://127.0.0.1:{port}/"),
                vec![(
                    "Authorization".into(),
                    format!("Bearer {}", crate::webhook::SECRET),
                )],
            )),
            ..Options::default()
        },
    );
    let dst = Registry::start(Mode::Http);
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!(
        "\"{}\": {}\n",
        src.image("team/app:/^v/"),
        dst.image("mirror/app")
    ));
    let mut served = crate::webhook::serve(&work, &images, port).await;
    let image = src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(seed, 1, 512).oci(true),
        )
        .await;
    let copied =
        crate::webhook::came_true(async || dst.fetch_manifest("mirror/app", "v1").await.is_some())
            .await;
    if !copied {
        panic!("v1 was not copied\n{}", served.terminate());
    }
    Mirrored {
        src,
        dst,
        served,
        image,
        _work: work,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_signature_reaches_the_target_through_the_webhook() {
    let Mirrored {
        src,
        dst,
        mut served,
        image,
        _work,
    } = mirrored_through_serve(81).await;
    let sig_tag = format!("{}.sig", fallback_tag(&image.digest));
    push_cosign_tag(
        &src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#],
    )
    .await;
    // Watched in the target's access log: reading a tag while it is written can be a 500.
    let sig_path = format!("/v2/mirror/app/manifests/{sig_tag}");
    let signed = crate::webhook::came_true(async || dst.count("PUT", &sig_path) == 1).await;
    let out = served.terminate();
    assert!(signed, "the signature was not copied\n{out}");
    out.assert_success();
    assert_same_raw(
        &src,
        &format!("team/app:{sig_tag}"),
        &dst,
        &format!("mirror/app:{sig_tag}"),
    );
    assert!(out.stderr.contains(" 0 failed"), "{out}");
}

/// A source with the referrers API (the proxy in front of a real registry) holding an
/// artifact pushed by digest alone after its image was mirrored (as notation or
/// `oras attach` push one): no tag lists it, yet `ferry plan --queue-url` notices it with
/// one referrers GET per image, and `ferry worker` copies it byte-exact. With nothing new,
/// the same one GET per image and no job.
#[tokio::test(flavor = "multi_thread")]
async fn the_planner_notices_a_referrer_only_the_api_lists() {
    let src = Registry::start(Mode::Http);
    let one = src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(91, 1, 512).oci(true),
        )
        .await;
    src.seed_image(
        "team/app",
        "v2",
        &ImageSpec::with_layers(92, 1, 512).oci(true),
    )
    .await;
    let proxy = referrers_api_proxy(&src);
    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[proxy.host(), dst.host()]);
    let images = work.images(format!(
        "\"{}\": {}\n",
        proxy.image("team/app:/^v/"),
        dst.image("mirror/app")
    ));
    let queue = QueueRun::start(work.auth()).await;
    assert_eq!(queue.jobs(&images, &[]), 2);
    queue.work();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");

    // A plan with nothing to send: one referrers GET per image at the source (the first
    // also tells that the registry has the API).
    let warm_plan = || {
        proxy.clear_requests();
        dst.clear_requests();
        assert_eq!(queue.jobs(&images, &[]), 0);
        let asked = proxy.count("GET", "/referrers/");
        assert_eq!(asked, 2, "{:?}", proxy.requests());
    };

    // Warm, nothing refers to either image: the target is never asked.
    warm_plan();
    assert_asked(&dst, "*", "/referrers/", 0);
    assert_asked(&dst, "*", "sha256-", 0);

    // An SBOM pushed by digest only, no fallback index: enqueued, copied, then in sync.
    let subject = Subject::new(&one.media_type, &one.digest, one.bytes.len());
    let sbom = push_artifact_by_digest(&src, "team/app", &subject, SBOM_TYPE, b"sbom").await;
    let sbom = sbom["digest"].as_str().unwrap().to_string();
    assert_eq!(src.count("*", &fallback_tag(&one.digest)), 0);
    assert_eq!(queue.jobs(&images, &[]), 1);
    let out = queue.work();
    assert!(out.stderr.contains("1 jobs succeeded, 0 failed"), "{out}");
    assert_same_raw(
        &src,
        &format!("team/app@{sbom}"),
        &dst,
        &format!("mirror/app@{sbom}"),
    );
    let listed = digests(
        &fallback_entries(&dst, "mirror/app", &one.digest)
            .await
            .unwrap(),
    );
    assert_eq!(listed, std::slice::from_ref(&sbom));

    // Warm again: still one referrers GET per image at the source; the target (no API:
    // one probe answered 404) has v1's fallback index read, listing the SBOM.
    warm_plan();
    assert_asked(&dst, "GET", "/referrers/", 1);
    assert_asked(&dst, "GET", &fallback_tag(&one.digest), 1);
}

/// `cosign sign --recursive` signs an index's children too (`sha256-<child>.sig`); the
/// planner knows only the index's digest. A signature on a child of a mirrored index,
/// pushed later, is noticed (its tag refers to no planned image: the index is read, once)
/// and copied by the worker. Before it, the repository's referrer tags all refer to
/// planned images, and the warm plan reads no manifest.
#[tokio::test(flavor = "multi_thread")]
async fn the_planner_notices_a_signature_on_a_child_of_an_index() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    let index = p
        .src
        .seed_index("team/app", "multi", &platforms, true)
        .await;
    let single = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(93, 1, 512).oci(true),
        )
        .await;
    let signature =
        [r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#];
    // v1 is signed: a referrer tag of another planned image's digest, no orphan.
    push_cosign_tag(
        &p.src,
        "team/app",
        &single.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &signature,
    )
    .await;
    let images = p.rule("team/app", "mirror/app");
    let queue = QueueRun::start(p.work.auth()).await;
    assert_eq!(queue.jobs(&images, &[]), 2);
    queue.work();
    p.assert_copied("team/app:multi", "mirror/app:multi");

    // Warm, no orphan: a HEAD of each image and of v1's `.sig` at the source; the index is
    // not read.
    p.src.clear_requests();
    p.dst.clear_requests();
    assert_eq!(queue.jobs(&images, &[]), 0);
    assert_asked(&p.src, "GET", "/manifests/", 0);
    assert_asked(&p.src, "HEAD", "/manifests/", 3);
    assert_asked(&p.dst, "GET", "/manifests/", 0);

    // A signature on the first child, pushed after the mirror.
    let child = &index.children[0];
    let sig_tag = format!("{}.sig", fallback_tag(&child.digest));
    push_cosign_tag(
        &p.src,
        "team/app",
        &child.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &signature,
    )
    .await;
    assert_eq!(queue.jobs(&images, &[]), 1);
    let out = queue.work();
    assert!(out.stderr.contains("1 jobs succeeded, 0 failed"), "{out}");
    p.assert_copied(
        &format!("team/app:{sig_tag}"),
        &format!("mirror/app:{sig_tag}"),
    );

    // In sync again: the orphan costs one GET of the index, then its `.sig` HEADs.
    p.src.clear_requests();
    assert_eq!(queue.jobs(&images, &[]), 0);
    assert_asked(&p.src, "GET", &format!("/manifests/{}", index.digest), 1);
    assert_asked(&p.src, "GET", "/manifests/", 1);
    assert_asked(&p.src, "HEAD", &sig_tag, 1);
}

/// Notation, `oras attach` or cosign in OCI 1.1 mode push a referrer by digest alone: the
/// webhook cannot read it, so the push becomes a job of that digest, and the copier finds
/// its `subject` and copies it to the target holding the subject, merging the target's
/// fallback index. A manifest without `subject` pushed so (an index's child) copies nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_referrer_pushed_by_digest_alone_reaches_the_target_through_the_webhook() {
    let Mirrored {
        src,
        dst,
        mut served,
        image,
        _work,
    } = mirrored_through_serve(82).await;
    let subject = Subject::new(&image.media_type, &image.digest, image.bytes.len());
    // The target holds a referrer of its own, listed in its fallback index.
    let theirs = push_artifact_by_digest(
        &dst,
        "mirror/app",
        &subject,
        "application/vnd.example.theirs",
        b"theirs",
    )
    .await;
    write_fallback_index(
        &dst,
        "mirror/app",
        &image.digest,
        std::slice::from_ref(&theirs),
    )
    .await;
    // Pushed by digest alone at the source: a manifest without subject (v1's, annotated),
    // then an SBOM of v1.
    let mut plain: Value = serde_json::from_slice(&image.bytes).unwrap();
    plain["annotations"] = serde_json::json!({"example": "no subject"});
    let plain = serde_json::to_vec(&plain).unwrap();
    let plain_digest = sha256_digest(&plain);
    src.push_manifest("team/app", &plain_digest, &image.media_type, &plain)
        .await;
    let sbom = push_artifact_by_digest(
        &src,
        "team/app",
        &subject,
        SBOM_TYPE,
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
    )
    .await;
    let sbom_digest = sbom["digest"].as_str().unwrap().to_string();
    // Watched in the target's access log: reading a tag while it is written can be a 500.
    let index_path = format!("/v2/mirror/app/manifests/{}", fallback_tag(&image.digest));
    let arrived = crate::webhook::came_true(async || dst.count("PUT", &index_path) == 2).await;
    // `ferry serve` finishes every queued job before it exits.
    let out = served.terminate();
    assert!(arrived, "the SBOM was not copied\n{out}");
    out.assert_success();
    assert!(out.stderr.contains(" 0 failed"), "{out}");
    // Merged: the target's own referrer first, then the SBOM, described as a referrers
    // list describes it.
    let entries = fallback_entries(&dst, "mirror/app", &image.digest)
        .await
        .unwrap();
    assert_eq!(entries, [theirs, sbom], "{out}");
    // The manifest without subject: read once at the source, nothing pushed for it.
    assert_eq!(
        src.count("GET", &format!("/v2/team/app/manifests/{plain_digest}")),
        1,
        "{:?}",
        summary(&src)
    );
    assert_eq!(
        dst.count("PUT", &format!("/manifests/{plain_digest}")),
        0,
        "{:?}",
        summary(&dst)
    );
    assert!(dst
        .fetch_manifest("mirror/app", &plain_digest)
        .await
        .is_none());
    // The SBOM's job: one GET of it at the source, one PUT of it on the target.
    assert_eq!(
        src.count("GET", &format!("/v2/team/app/manifests/{sbom_digest}")),
        1,
        "{:?}",
        summary(&src)
    );
    assert_eq!(
        dst.count("PUT", &format!("/v2/mirror/app/manifests/{sbom_digest}")),
        1,
        "{:?}",
        summary(&dst)
    );
    assert_same_raw(
        &src,
        &format!("team/app@{sbom_digest}"),
        &dst,
        &format!("mirror/app@{sbom_digest}"),
    );
}

/// A registry may notify of a tag before it lists it (distribution 2.8 links the tag after
/// notifying): a job for a pushed signature whose tag the source does not show yet fails as
/// worth another try, never "in sync", and copies the signature once it is there.
#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_signature_not_listed_yet_fails_to_be_tried_again() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let image = p
        .src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(83, 1, 512).oci(true),
        )
        .await;
    let copier = crate::copier_for(&[&p.src, &p.dst]).await;
    let sig_tag = format!("{}.sig", fallback_tag(&image.digest));
    // The webhook's job for the signature's push: its subject, by digest, naming the tag.
    let job = PlannedImage {
        source: Reference::parse(&format!("{}/team/app@{}", p.src.host(), image.digest)).unwrap(),
        digest: Some(image.digest.parse().unwrap()),
        targets: vec![
            Reference::parse(&format!("{}/mirror/app@{}", p.dst.host(), image.digest)).unwrap(),
        ],
        rule_options: Default::default(),
        pushed_referrer: Some(PushedReferrer::Tag(sig_tag.clone())),
    };
    let (report, retryable) = copier.copy_image_with(&job, &ImageOptions::default()).await;
    assert_eq!(report.status, Status::Failed, "{report:?}");
    assert!(retryable, "{report:?}");
    assert_eq!(report.kind, Some(Kind::Transport), "{report:?}");
    assert!(
        report.reason.as_deref().unwrap().contains(&sig_tag),
        "{report:?}"
    );
    // Nothing was copied on that attempt: one listing and one HEAD of the tag at the source.
    assert_asked(&p.dst, "PUT", "/manifests/", 0);
    assert_asked(&p.src, "GET", "/v2/team/app/tags/list", 1);
    let sig_path = format!("/v2/team/app/manifests/{sig_tag}");
    assert_asked(&p.src, "HEAD", &sig_path, 1);
    push_cosign_tag(
        &p.src,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#],
    )
    .await;
    // The next attempt finds it: the image and its signature are copied.
    let (report, _) = copier.copy_image_with(&job, &ImageOptions::default()).await;
    assert_eq!(report.status, Status::Copied, "{report:?}");
    assert_eq!(report.referrers_copied, 1, "{report:?}");
    assert_same_raw(
        &p.src,
        &format!("team/app:{sig_tag}"),
        &p.dst,
        &format!("mirror/app:{sig_tag}"),
    );
}
