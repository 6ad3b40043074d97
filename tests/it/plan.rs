//! `ferry plan` end to end: every rule form of image-syncer's images file resolved against a
//! real registry, with the exact lines printed.

use support::{run_ferry, ImageSpec, Mode, Pki, Registry, Workdir, FAST_RETRIES};

/// One image under several tags, and a second repository for the digest form.
async fn seeded() -> (Registry, String) {
    let reg = Registry::start(Mode::Http);
    let image = reg
        .seed_image("team/app", "v1.0", &ImageSpec::with_layers(1, 1, 1024))
        .await;
    let tags: Vec<String> = ["v1.1", "v2.0", "latest", "banana"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    reg.tag_many("team/app", &tags, &image).await;
    (reg, image.digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_form_resolves() {
    let (reg, digest) = seeded().await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.images(format!(
            "{src}/team/app: dst.example.com/all/app\n\
             {src}/team/app:v1.0,v2.0: dst.example.com/list/app\n\
             {src}/team/app:v1.0,v1.1:\n  - dst.example.com/ren/app:one,two\n  - dst.example.com/ren/app:one,two\n  - mirror\n\
             {src}/team/app@{digest}: dst.example.com/digest/app\n\
             {src}/team/app:/an+/: dst.example.com/regex/app\n\
             {src}/team/app:/^v1\\./: dst.example.com/anchored/app\n\
             {src}/team/app:latest: ''\n\
             {src}/team/app:v2.0: $DEST/${{NS}}/expanded\n"
    ));
    let out = work.plan(
        &images,
        &["--registry=flag.example.com"],
        &[
            ("DEFAULT_REGISTRY", "env.example.com"),
            ("DEFAULT_NAMESPACE", "ns"),
            ("DEST", "vars.example.com"),
            ("NS", "team"),
        ],
    );
    out.assert_success();
    let s = |tag: &str| format!("{src}/team/app:{tag}");
    let mut expected: Vec<(String, String)> = vec![
        // every tag
        (s("banana"), "dst.example.com/all/app:banana".into()),
        (s("latest"), "dst.example.com/all/app:latest".into()),
        (s("v1.0"), "dst.example.com/all/app:v1.0".into()),
        (s("v1.1"), "dst.example.com/all/app:v1.1".into()),
        (s("v2.0"), "dst.example.com/all/app:v2.0".into()),
        // tag list
        (s("v1.0"), "dst.example.com/list/app:v1.0".into()),
        (s("v2.0"), "dst.example.com/list/app:v2.0".into()),
        // rename, duplicated target dropped; unqualified target is Docker Hub's library/
        (s("v1.0"), "dst.example.com/ren/app:one".into()),
        (s("v1.1"), "dst.example.com/ren/app:two".into()),
        (s("v1.0"), "docker.io/library/mirror:v1.0".into()),
        (s("v1.1"), "docker.io/library/mirror:v1.1".into()),
        // digest kept
        (
            format!("{src}/team/app@{digest}"),
            format!("dst.example.com/digest/app@{digest}"),
        ),
        // unanchored regex: "an+" matches "banana" only
        (s("banana"), "dst.example.com/regex/app:banana".into()),
        // anchored regex
        (s("v1.0"), "dst.example.com/anchored/app:v1.0".into()),
        (s("v1.1"), "dst.example.com/anchored/app:v1.1".into()),
        // empty target: flag registry wins over env, env namespace, the source path below its first namespace
        (s("latest"), "flag.example.com/ns/app:latest".into()),
        // variables
        (s("v2.0"), "vars.example.com/team/expanded:v2.0".into()),
    ];
    expected.sort();
    assert_eq!(out.pairs(), expected, "{out}");
    // Every line carries the digest the planner saw.
    for line in out.stdout.lines() {
        assert!(line.contains(&format!("\"digest\":\"{digest}\"")), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_images_file_with_target_arrays() {
    let (reg, _) = seeded().await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.write(
        "images.json",
        format!(
            r#"{{"{src}/team/app:latest": ["a.example.com/x", "b.example.com/y/z", "a.example.com/x"]}}"#
        ),
    );
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    assert_eq!(
        out.pairs(),
        vec![
            (
                format!("{src}/team/app:latest"),
                "a.example.com/x:latest".into()
            ),
            (
                format!("{src}/team/app:latest"),
                "b.example.com/y/z:latest".into()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_config_file() {
    let reg = Registry::start(Mode::BasicTls);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(2, 1, 512))
        .await;
    let work = Workdir::new();
    let (user, password) = reg.credentials().unwrap();
    let config = work.write(
        "config.json",
        format!(
            r#"{{"auth": {{"{host}": {{"username": "{user}", "password": "{password}", "ca": "{ca}"}}}},
                "images": {{"{host}/team/app": "dst.example.com/team/app"}}}}"#,
            host = reg.host(),
            ca = Pki::get().ca_cert.display()
        ),
    );
    let out = run_ferry(
        &["plan".into(), format!("--config={}", config.display())],
        &[FAST_RETRIES],
    );
    out.assert_success();
    assert_eq!(
        out.pairs(),
        vec![(
            format!("{}/team/app:v1", reg.host()),
            "dst.example.com/team/app:v1".into()
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_rules_are_named_and_the_rest_printed() {
    let (reg, _) = seeded().await;
    let work = Workdir::trusting(&[&reg]);
    let src = reg.host();
    let images = work.images(format!(
        "{src}/team/app:v1.0,nope: dst.example.com/a\n\
         {src}/team/missing: dst.example.com/b\n\
         {src}/team/app:latest: dst.example.com/c\n"
    ));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    // The good rule, and the good tag of the half-good rule, are still printed.
    assert_eq!(
        out.pairs(),
        vec![
            (
                format!("{src}/team/app:latest"),
                "dst.example.com/c:latest".into()
            ),
            (
                format!("{src}/team/app:v1.0"),
                "dst.example.com/a:v1.0".into()
            ),
        ]
    );
    assert!(
        out.stderr
            .contains(&format!("rule \"{src}/team/app:v1.0,nope\"")),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("{src}/team/app:nope does not exist")),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!("rule \"{src}/team/missing\"")),
        "{out}"
    );
    assert!(out.stderr.contains("NAME_UNKNOWN"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_registry_fails_with_status_1() {
    let port = support::free_port();
    let work = Workdir::insecure(&[format!("127.0.0.1:{port}")]);
    let images = work.images(format!("127.0.0.1:{port}/a/b:v1: dst.example.com/a/b\n"));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(&format!("ping 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}
