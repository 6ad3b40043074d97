//! Selection by the images file's long form (`to`, `tags: {include, semver, exclude,
//! latest}`) end to end: `ferry plan` and `ferry sync` against real registries take exactly
//! the tags the filters keep, and every bad value stops ferry with exit 2 before any registry
//! is contacted.

use support::{assert_same_raw, ferry_plan, ImageSpec, Mode, Registry, Workdir};

/// The tags every test seeds: releases, a pre-release, a `v` prefix, and two non-semver tags.
const SEEDED: [&str; 7] = [
    "1.24.0",
    "1.25.3",
    "1.26.0-rc1",
    "v1.27.1",
    "latest",
    "2.0.0",
    "1.25",
];

/// A source registry whose `lib/nginx` has every tag of [`SEEDED`] (one image).
async fn seeded() -> Registry {
    let reg = Registry::start(Mode::Http);
    let image = reg
        .seed_image("lib/nginx", SEEDED[0], &ImageSpec::with_layers(14, 1, 512))
        .await;
    let rest: Vec<String> = SEEDED[1..].iter().map(|s| s.to_string()).collect();
    reg.tag_many("lib/nginx", &rest, &image).await;
    reg
}

/// The source tags `ferry plan` printed for `rule` (one line per source → target).
fn planned_tags(work: &Workdir, src: &str, rule: &str) -> Vec<String> {
    let images = work.images(format!("{src}/lib/nginx:\n{rule}"));
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    let prefix = format!("{src}/lib/nginx:");
    let mut tags: Vec<String> = out
        .pairs()
        .into_iter()
        .map(|(source, _)| {
            source
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("unexpected source {source}\n{out}"))
                .to_string()
        })
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_takes_exactly_what_the_filters_keep() {
    let reg = seeded().await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let cases: [(&str, &[&str]); 7] = [
        (
            "  to: dst.example.com/n\n  tags: {semver: '>=1.24, <2'}\n",
            &["1.24.0", "1.25.3", "v1.27.1"],
        ),
        (
            "  to: dst.example.com/n\n  tags: {exclude: [latest, '/-rc/']}\n",
            &["1.24.0", "1.25", "1.25.3", "2.0.0", "v1.27.1"],
        ),
        (
            "  to: dst.example.com/n\n  tags: {latest: 2}\n",
            &["2.0.0", "v1.27.1"],
        ),
        (
            "  to: dst.example.com/n\n  tags: {include: ['/^v?1\\./'], exclude: ['/-rc/'], latest: 2}\n",
            &["1.25.3", "v1.27.1"],
        ),
        // Unanchored like the short form: "25" is anywhere in the tag.
        (
            "  to: dst.example.com/n\n  tags: {include: ['/25/']}\n",
            &["1.25", "1.25.3"],
        ),
        (
            "  to: dst.example.com/n\n  tags: {semver: '>=1.26.0-rc0, <1.27'}\n",
            &["1.26.0-rc1"],
        ),
        ("  to: dst.example.com/n\n  tags: {latest: 1}\n", &["2.0.0"]),
    ];
    for (rule, expected) in cases {
        assert_eq!(planned_tags(&work, &src, rule), expected, "{rule}");
    }
    // A regex source selects first, then the map's filters rank what it took.
    let images = work.images(format!(
        "{src}/lib/nginx:/^1\\./:\n  to: dst.example.com/n\n  tags: {{latest: 1}}\n"
    ));
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    assert_eq!(
        out.pairs(),
        [(
            format!("{src}/lib/nginx:1.26.0-rc1"),
            "dst.example.com/n:1.26.0-rc1".to_string()
        )],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_copies_exactly_the_selected_tags() {
    let src = seeded().await;
    let dst = Registry::start(Mode::Http);
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!(
        "{0}/lib/nginx:\n  to: [{1}/mirror/nginx, {1}/backup/nginx]\n  tags:\n    \
         semver: '>=1.24, <3'\n    exclude: ['/-(rc|beta|alpha)/']\n    latest: 3\n\
         {0}/lib/nginx:latest: {1}/short/nginx\n",
        src.host(),
        dst.host()
    ));
    work.sync(&images, &[]).assert_success();
    for repo in ["mirror/nginx", "backup/nginx"] {
        assert_eq!(
            dst.list_tags(repo).await,
            ["1.25.3", "2.0.0", "v1.27.1"],
            "{repo}"
        );
    }
    assert_eq!(dst.list_tags("short/nginx").await, ["latest"]);
    assert_same_raw(&src, "lib/nginx:v1.27.1", &dst, "mirror/nginx:v1.27.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_long_forms_are_named_and_nothing_is_contacted() {
    let reg = seeded().await;
    let src = reg.host();
    let work = Workdir::trusting(&[&reg]);
    let digest = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
    let cases: [(String, &str); 9] = [
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tag: {{}}}}"),
            "unknown key \"tag\"",
        ),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tags: {{latest: 0}}}}"),
            "tags.latest: 0",
        ),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tags: {{latest: many}}}}"),
            "tags.latest: \"many\"",
        ),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tags: {{semver: '>=1.x.y'}}}}"),
            "tags.semver: \">=1.x.y\"",
        ),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tags: {{exclude: ['/(/']}}}}"),
            "tags.exclude: \"/(/\"",
        ),
        (
            format!("{src}/lib/nginx@{digest}: {{to: x.example.com/n, tags: {{include: [v1]}}}}"),
            "tags.include: a digest source",
        ),
        (format!("{src}/lib/nginx: {{to: ''}}"), "non-empty `to`"),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, platforms: [linux]}}"),
            "platforms: \"linux\"",
        ),
        (
            format!("{src}/lib/nginx: {{to: x.example.com/n, tags: {{semver: '<2', latest: -3}}}}"),
            "tags.latest: -3",
        ),
    ];
    for (body, needle) in cases {
        // A valid rule next to the bad one: it must not be contacted either.
        let images = work.images(format!(
            "{src}/lib/nginx:latest: x.example.com/ok\n{body}\n"
        ));
        reg.clear_requests();
        let out = ferry_plan(Some(work.auth()), &images, &[], &[]);
        out.assert_code(2);
        let rule = body.split(": {").next().unwrap_or_default();
        for expected in ["images.yaml", &format!("rule \"{rule}\""), needle] {
            assert!(
                out.stderr.contains(expected),
                "{body}: missing {expected:?}\n{out}"
            );
        }
        assert!(
            reg.requests().is_empty(),
            "{body}: bad input must contact no registry: {:?}",
            reg.requests()
        );
    }
}

/// image-syncer v1.0–v1.4 keep the path below the first namespace for an empty target, so
/// two repositories of the same name in different namespaces stay apart.
#[tokio::test(flavor = "multi_thread")]
async fn empty_targets_keep_the_path_below_the_first_namespace() {
    let reg = Registry::start(Mode::Http);
    let image = ImageSpec::with_layers(21, 1, 256);
    for repo in [
        "knative-releases/github.com/knative/build/cmd/creds-init",
        "a/x/app",
        "a/y/app",
    ] {
        reg.seed_image(repo, "v1", &image).await;
    }
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.images(format!(
        "{src}/knative-releases/github.com/knative/build/cmd/creds-init:v1: ''\n\
         {src}/a/x/app:v1: ''\n{src}/a/y/app:v1:\n"
    ));
    let out = work.plan(
        &images,
        &["--registry", "d.example.com", "--namespace", "ns"],
        &[],
    );
    out.assert_success();
    let mut expected = vec![
        (
            format!("{src}/knative-releases/github.com/knative/build/cmd/creds-init:v1"),
            "d.example.com/ns/github.com/knative/build/cmd/creds-init:v1".to_string(),
        ),
        (
            format!("{src}/a/x/app:v1"),
            "d.example.com/ns/x/app:v1".into(),
        ),
        (
            format!("{src}/a/y/app:v1"),
            "d.example.com/ns/y/app:v1".into(),
        ),
    ];
    expected.sort();
    assert_eq!(out.pairs(), expected, "{out}");
}

/// Two rules writing different sources to one target tag: refused as bad input (exit 2)
/// naming both rules and the file. Named tags are refused before any request; rules that
/// list tags once listed, before any manifest is read or copied.
#[tokio::test(flavor = "multi_thread")]
async fn rules_writing_one_target_tag_are_refused() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    let image = ImageSpec::with_layers(22, 1, 256);
    let other = ImageSpec::with_layers(23, 1, 256);
    src.seed_image("a/app", "1", &image).await;
    src.seed_image("b/app", "1", &other).await;
    let work = Workdir::trusting(&[&src, &dst]);
    let (s, d) = (src.host(), dst.host());

    // Known from the file: nothing contacted, by plan or sync.
    let images = work.images(format!(
        "{s}/a/app:1: {d}/x/app\n{s}/b/app:0,1: {d}/x/app\n"
    ));
    src.clear_requests();
    dst.clear_requests();
    for out in [work.plan(&images, &[], &[]), work.sync(&images, &[])] {
        out.assert_code(2);
        for needle in [
            "images.yaml: rule \"",
            &format!("{s}/a/app:1\""),
            &format!("{s}/b/app:0,1\""),
            &format!("{d}/x/app:1 would be written twice"),
        ] {
            assert!(out.stderr.contains(needle), "missing {needle:?}\n{out}");
        }
    }
    assert!(src.requests().is_empty(), "{:?}", src.requests());
    assert!(dst.requests().is_empty(), "{:?}", dst.requests());

    // Found by listing: refused after the listings, before any manifest or copy.
    let images = work.images(format!("{s}/a/app: {d}/x/app\n{s}/b/app: {d}/x/app\n"));
    src.clear_requests();
    dst.clear_requests();
    for out in [work.plan(&images, &[], &[]), work.sync(&images, &[])] {
        out.assert_code(2);
        for needle in [
            &format!("rule \"{s}/a/app\""),
            &format!("rule \"{s}/b/app\""),
            &format!("{d}/x/app:1 would be written twice"),
        ] {
            assert!(out.stderr.contains(needle), "missing {needle:?}\n{out}");
        }
    }
    assert_eq!(src.count("GET", "/manifests/"), 0);
    assert_eq!(src.count("HEAD", "/manifests/"), 0);
    assert!(dst.requests().is_empty(), "{:?}", dst.requests());

    // The same source twice to one target is not a collision; a tag filtered out is none.
    let images = work.images(format!(
        "{s}/a/app:1: {d}/x/app\n{s}/a/app:/1/: {d}/x/app\n\
         {s}/b/app:\n  to: {d}/x/app\n  tags: {{exclude: ['1']}}\n"
    ));
    work.sync(&images, &[]).assert_success();
    assert_same_raw(&src, "a/app:1", &dst, "x/app:1");
}

/// A rule's own `platforms:` and `force:` replace the run's flags for what it selects, and
/// only for that: another rule on the same image copies every platform and skips when in
/// sync.
#[tokio::test(flavor = "multi_thread")]
async fn rule_platforms_and_force_are_honoured() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    src.seed_index(
        "team/app",
        "multi",
        &[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v7")),
        ],
        true,
    )
    .await;
    let work = Workdir::trusting(&[&src, &dst]);
    let (s, d) = (src.host(), dst.host());
    let images = work.images(format!(
        "{s}/team/app:multi:\n  to: {d}/arm/app\n  platforms: [linux/arm64/v8]\n\
         {s}/team/app:/^multi$/: {d}/all/app\n\
         {s}/team/app:\n  to: {d}/forced/app\n  force: true\n"
    ));
    work.sync(&images, &[]).assert_success();
    let filtered: serde_json::Value =
        serde_json::from_slice(&support::skopeo_inspect_raw(&dst, "arm/app:multi")).unwrap();
    let entries = filtered["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{filtered}");
    assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    assert_same_raw(&src, "team/app:multi", &dst, "all/app:multi");
    assert_same_raw(&src, "team/app:multi", &dst, "forced/app:multi");

    // Again: only the forced rule pushes; the others are in sync.
    dst.clear_requests();
    work.sync(&images, &[]).assert_success();
    assert!(
        dst.count("PUT", "/v2/forced/app/manifests/") >= 1,
        "{:?}",
        dst.requests()
    );
    assert_eq!(dst.count("PUT", "/v2/all/app/manifests/"), 0);
    assert_eq!(dst.count("PUT", "/v2/arm/app/manifests/"), 0);
    // The run's --arch does not reach the rule with its own platforms.
    let out = work.plan(&images, &["--arch", "amd64"], &[]);
    out.assert_success();
}

/// `ferry plan` names the rules behind each line; `--explain` prints, per rule, every tag
/// seen and why each was dropped.
#[tokio::test(flavor = "multi_thread")]
async fn plan_explains_what_each_rule_dropped() {
    let reg = seeded().await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.images(format!(
        "{src}/lib/nginx:\n  to: dst.example.com/n\n  tags:\n    \
         include: ['/^v?[12]\\./']\n    semver: '>=1.24, <3'\n    exclude: ['2.0.0']\n    latest: 2\n\
         {src}/lib/nginx:latest: dst.example.com/n\n"
    ));
    let out = work.plan(&images, &["--explain"], &[]);
    out.assert_success();
    let long = format!("{src}/lib/nginx");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules_of = |tag: &str| {
        lines
            .iter()
            .find(|l| l["source"] == format!("{long}:{tag}"))
            .map(|l| l["rules"].clone())
    };
    assert_eq!(
        rules_of("v1.27.1"),
        Some(serde_json::json!([long])),
        "{out}"
    );
    assert_eq!(
        rules_of("latest"),
        Some(serde_json::json!([format!("{long}:latest")])),
        "{out}"
    );
    for expected in [
        format!("rule \"{long}\": 2 image(s) selected; 2 of 7 tag(s) seen taken"),
        "  1.25.3: selected".to_string(),
        "  v1.27.1: selected".to_string(),
        "  1.24.0: dropped, beyond latest".to_string(),
        "  1.26.0-rc1: dropped, outside the semver range".to_string(),
        "  latest: dropped, not included".to_string(),
        "  2.0.0: dropped, excluded".to_string(),
        "  1.25: dropped, not semver".to_string(),
        format!("rule \"{long}:latest\": 1 image(s) selected; 1 of 1 tag(s) seen taken"),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "missing {expected:?}\n{out}"
        );
    }
}

/// Webhooks through a real `ferry serve`, fed by a real registry's notifications, select
/// with the same long form: a push of a release candidate the rule excludes is ignored, a
/// release it includes is copied, and nothing already on the target is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn ferry_serve_filters_pushes_by_the_long_form() {
    use crate::webhook::{came_true, serve, SECRET};
    let port = support::free_port();
    let src = Registry::start_with(
        Mode::Http,
        support::Options {
            notify: Some((
                format!("http://127.0.0.1:{port}/hook"),
                vec![("Authorization".into(), format!("Bearer {SECRET}"))],
            )),
            ..support::Options::default()
        },
    );
    let dst = Registry::start(Mode::Http);
    // On the target already, outside any newest 5 once more arrive: it stays.
    dst.seed_image(
        "mirror/nginx",
        "0.9.0",
        &ImageSpec::with_layers(330, 1, 256),
    )
    .await;
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!(
        "{}/lib/nginx:\n  to: {}/mirror/nginx\n  tags: {{exclude: ['/-rc/'], latest: 5}}\n",
        src.host(),
        dst.host()
    ));
    let mut served = serve(&work, &images, port).await;
    src.seed_image(
        "lib/nginx",
        "1.27.0-rc1",
        &ImageSpec::with_layers(331, 1, 512),
    )
    .await;
    src.seed_image("lib/nginx", "1.27.0", &ImageSpec::with_layers(332, 1, 512))
        .await;
    let copied =
        came_true(async || dst.fetch_manifest("mirror/nginx", "1.27.0").await.is_some()).await;
    if !copied {
        panic!("1.27.0 was not copied\n{}", served.terminate());
    }
    let out = served.terminate();
    out.assert_success();
    assert_same_raw(&src, "lib/nginx:1.27.0", &dst, "mirror/nginx:1.27.0");
    assert_eq!(
        dst.list_tags("mirror/nginx").await,
        ["0.9.0", "1.27.0"],
        "{out}"
    );
    assert!(
        out.stderr
            .contains("ferry: serve: 1 jobs succeeded, 0 failed"),
        "{out}"
    );
}

/// Wildcard sources are checked before anything is contacted: a wildcard in the middle of a
/// path, on Docker Hub, with a tag, or in a target (or a target naming tags) is bad input
/// naming file, rule and value.
#[tokio::test(flavor = "multi_thread")]
async fn wildcards_are_bad_input_before_any_request() {
    let reg = Registry::start(Mode::Http);
    let src = reg.host();
    let work = Workdir::trusting(&[&reg]);
    for (rule, target, needle) in [
        (
            format!("{src}/team/*/app"),
            "x.example.com/t",
            "whole last segment",
        ),
        (
            "docker.io/library/*".to_string(),
            "x.example.com/t",
            "Docker Hub (docker.io)",
        ),
        (
            format!("{src}/team/app"),
            "x.example.com/*",
            "target cannot be a wildcard",
        ),
        (
            format!("{src}/team/**"),
            "x.example.com/t:v1",
            "names no tag or digest",
        ),
        (
            format!("{src}/team:v1/*"),
            "x.example.com/t",
            "no tag or digest",
        ),
    ] {
        let images = work.images(format!(
            "{src}/team/app:v1: x.example.com/ok\n{rule}: {target}\n"
        ));
        reg.clear_requests();
        let out = work.plan(&images, &[], &[]);
        out.assert_code(2);
        for expected in ["images.yaml", &format!("rule {rule:?}"), needle] {
            assert!(
                out.stderr.contains(expected),
                "{rule}: missing {expected:?}\n{out}"
            );
        }
        assert!(reg.requests().is_empty(), "{rule}: {:?}", reg.requests());
    }
}

/// Wildcard sources over 156 repositories at three depths: `_catalog` is walked page by page
/// (50 a page, so four pages), `**` takes every depth below the prefix and `*` its direct
/// children, each keeping its path under the target. A warm run costs one catalogue walk
/// plus today's per-repository listing and per-tag HEADs: no manifest read, nothing pushed.
#[tokio::test(flavor = "multi_thread")]
async fn wildcards_walk_the_catalogue_and_keep_paths() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    let image = ImageSpec::with_layers(340, 1, 128);
    let mut repos: Vec<String> = Vec::new();
    repos.extend((0..60).map(|i| format!("team/a{i}")));
    repos.extend((0..50).map(|i| format!("team/x/b{i}")));
    repos.extend((0..45).map(|i| format!("team/x/y/c{i}")));
    for repo in &repos {
        src.seed_image(repo, "v1", &image).await;
    }
    src.seed_image("other/z", "v1", &image).await;
    let work = Workdir::trusting(&[&src, &dst]);
    let (s, d) = (src.host(), dst.host());
    let page = ["--tags-page-size", "50"];

    // `*`: the 60 direct children only.
    let images = work.images(format!("{s}/team/*: {d}/direct\n"));
    let out = work.plan(&images, &page, &[]);
    out.assert_success();
    assert_eq!(out.pairs().len(), 60, "{out}");
    assert!(out
        .pairs()
        .contains(&(format!("{s}/team/a7:v1"), format!("{d}/direct/a7:v1"))));

    // `**`: all 155 below team/, paths kept; the catalogue read in four pages.
    let images = work.images(format!("{s}/team/**: {d}/backup\n"));
    src.clear_requests();
    work.sync(&images, &page).assert_success();
    assert_eq!(src.count("GET", "/v2/_catalog"), 4, "{:?}", src.requests());
    for repo in ["a0", "x/b49", "x/y/c44"] {
        assert_eq!(
            dst.list_tags(&format!("backup/{repo}")).await,
            ["v1"],
            "{repo}"
        );
    }
    assert_same_raw(&src, "team/x/y/c3:v1", &dst, "backup/x/y/c3:v1");
    assert!(dst.list_tags("backup/z").await.is_empty());

    // Warm: one catalogue walk, a tags/list and a HEAD per repository, a HEAD per target.
    src.clear_requests();
    dst.clear_requests();
    work.sync(&images, &page).assert_success();
    assert_eq!(src.count("GET", "/v2/_catalog"), 4);
    assert_eq!(src.count("GET", "/tags/list"), 155);
    assert_eq!(src.count("HEAD", "/manifests/"), 155);
    assert_eq!(src.count("GET", "/manifests/"), 0);
    assert_eq!(dst.count("HEAD", "/manifests/"), 155);
    for method in ["PUT", "POST", "PATCH"] {
        assert_eq!(dst.count(method, "/"), 0, "{method}");
    }
    let total = src.requests().len() + dst.requests().len();
    eprintln!("warm wildcard run over 155 repositories: {total} requests");
}

/// A registry that refuses `_catalog` fails the wildcard rule naming the registry and why;
/// the other rules still run.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_catalogue_fails_the_wildcard_rule() {
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(341, 1, 128))
        .await;
    let proxy = support::Proxy::passthrough(&src);
    proxy.set_hook(|r: &support::ProxyRequest| {
        r.path
            .contains("_catalog")
            .then(|| support::Fault::Respond {
                status: 404,
                headers: Vec::new(),
                body: br#"{"errors":[{"code":"UNSUPPORTED","message":"no catalog"}]}"#.to_vec(),
            })
    });
    let work = Workdir::insecure(&[proxy.host()]);
    // The proxy sits in front of a real registry only to refuse `_catalog` as some do.
    let p = proxy.host();
    let images = work.images(format!(
        "{p}/team/**: dst.example.com/b\n{p}/team/app:v1: dst.example.com/ok\n"
    ));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(&format!("rule \"{p}/team/**\"")),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("list the repositories of {p} (_catalog)")),
        "{out}"
    );
    assert_eq!(out.pairs().len(), 1, "{out}");
}

/// A wildcard source behind token auth: distribution answers `_catalog` only to a token
/// with the `registry:catalog:*` scope, which ferry asks for with the prefix's credentials.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_registry_s_catalogue_is_read_with_the_catalog_scope() {
    let src = Registry::start(Mode::Token);
    let dst = Registry::start(Mode::Http);
    let image = ImageSpec::with_layers(342, 1, 128);
    for repo in ["team/a", "team/x/b"] {
        src.seed_image(repo, "v1", &image).await;
    }
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!("{}/team/**: {}/backup\n", src.host(), dst.host()));
    work.sync(&images, &[]).assert_success();
    assert_same_raw(&src, "team/a:v1", &dst, "backup/a:v1");
    assert_same_raw(&src, "team/x/b:v1", &dst, "backup/x/b:v1");
    let asked: Vec<String> = src
        .token_requests()
        .into_iter()
        .flat_map(|r| r.scopes)
        .collect();
    assert!(asked.iter().any(|s| s == "registry:catalog:*"), "{asked:?}");
}

/// `ferry plan --explain` lists what refers to each selected image at the source, found as a
/// copy finds it: a cosign tag, an SBOM in the fallback index, and the SBOM's own signature
/// one level deeper; `--referrers-type` marks what it leaves out, `--referrers=false` lists
/// none. Referrer tags are never listed as images of their own.
#[tokio::test(flavor = "multi_thread")]
async fn plan_explains_what_refers_to_each_image() {
    use support::referrers::{
        fallback_tag, push_artifact_by_digest, push_cosign_tag, write_fallback_index, Subject,
        COSIGN_SIMPLESIGNING,
    };
    const SBOM: &str = "application/spdx+json";
    let reg = Registry::start(Mode::Http);
    let image = reg
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(61, 1, 512).oci(true),
        )
        .await;
    let subject = Subject::new(&image.media_type, &image.digest, image.bytes.len());
    let sbom = push_artifact_by_digest(&reg, "team/app", &subject, SBOM, b"{}").await;
    let sbom_digest = sbom["digest"].as_str().unwrap().to_string();
    write_fallback_index(&reg, "team/app", &image.digest, &[sbom]).await;
    let payload = r#"{"critical":{"identity":{"docker-reference":"team/app"}},"optional":null}"#;
    let sig = push_cosign_tag(
        &reg,
        "team/app",
        &image.digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[payload],
    )
    .await;
    let sbom_payload =
        r#"{"critical":{"identity":{"docker-reference":"team/sbom"}},"optional":null}"#;
    let sbom_sig = push_cosign_tag(
        &reg,
        "team/app",
        &sbom_digest,
        "sig",
        COSIGN_SIMPLESIGNING,
        &[sbom_payload],
    )
    .await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.images(format!("{src}/team/app: dst.example.com/app\n"));

    let out = work.plan(&images, &["--explain"], &[]);
    out.assert_success();
    assert_eq!(out.stdout.lines().count(), 1, "only v1 is an image\n{out}");
    let fallback = fallback_tag(&image.digest);
    for expected in [
        format!("  referrers of {src}/team/app:v1:"),
        format!(
            "    referrer {sbom_digest} of {} ({SBOM}), in fallback tag {fallback}",
            image.digest
        ),
        format!(
            "    referrer {sig} of {} ({COSIGN_SIMPLESIGNING}), in cosign tag {fallback}.sig",
            image.digest
        ),
        format!(
            "      referrer {sbom_sig} of {sbom_digest} ({COSIGN_SIMPLESIGNING}), in cosign tag {}.sig",
            fallback_tag(&sbom_digest)
        ),
    ]
    .iter()
    {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?}\n{out}"
        );
    }
    // Referrer tags are not images, so not tags the rule took or dropped either.
    assert!(!out.stderr.contains(&format!("  {fallback}.sig:")), "{out}");

    let typed = work.plan(&images, &["--explain", "--referrers-type", SBOM], &[]);
    typed.assert_success();
    assert!(
        typed.stderr.contains(&format!(
            "referrer {sig} of {} ({COSIGN_SIMPLESIGNING}), in cosign tag {fallback}.sig; not of a --referrers-type, not copied",
            image.digest
        )),
        "{typed}"
    );
    assert!(
        typed.stderr.contains(&format!(
            "referrer {sbom_digest} of {} ({SBOM}), in fallback tag {fallback}\n",
            image.digest
        )),
        "{typed}"
    );

    let off = work.plan(&images, &["--explain", "--referrers=false"], &[]);
    off.assert_success();
    assert!(!off.stderr.contains("referrers of"), "{off}");
}
