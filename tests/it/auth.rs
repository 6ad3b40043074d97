//! Authentication end to end: Basic over TLS with a private CA, Bearer tokens from a real
//! token flow (cached), anonymous tokens, longest-match auth entries, environment references,
//! the Docker config fallback, and refusing to send credentials to a plain-HTTP realm.

use support::{
    ferry_plan, write_file, ImageSpec, Mode, Pair, Pki, Registry, Workdir, BASIC_PASSWORD,
    BASIC_USER, TOKEN_PASSWORD, TOKEN_USER,
};

async fn registry_with(mode: Mode, repos: &[&str]) -> Registry {
    let reg = Registry::start(mode);
    for (i, repo) in repos.iter().enumerate() {
        reg.seed_image(repo, "v1", &ImageSpec::with_layers(10 + i as u64, 1, 256))
            .await;
    }
    reg
}

/// `images.yaml` in `work` planning each of `repos` (tag `v1`) to `dst.example.com`.
fn images_for(work: &Workdir, reg: &Registry, repos: &[&str]) -> std::path::PathBuf {
    let yaml: String = repos
        .iter()
        .map(|r| format!("{}/{r}:v1: dst.example.com/{r}\n", reg.host()))
        .collect();
    work.images(yaml)
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_over_tls_with_a_private_ca() {
    let reg = registry_with(Mode::BasicTls, &["team/app"]).await;
    let work = Workdir::trusting(&[&reg]);
    let images = images_for(&work, &reg, &["team/app"]);
    work.plan(&images, &[], &[]).assert_success();

    // Wrong password: unauthorized, named.
    let bad = work.write(
        "bad.yaml",
        format!(
            "{}:\n  username: {BASIC_USER}\n  password: wrong\n  ca: {}\n",
            reg.host(),
            Pki::get().ca_cert.display()
        ),
    );
    let out = ferry_plan(Some(&bad), &images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.contains("unauthorized"), "{out}");
    assert!(
        !out.stderr.contains("wrong"),
        "the password must not be printed\n{out}"
    );

    // Without the CA the certificate is not trusted.
    let untrusted = work.write(
        "untrusted.yaml",
        format!(
            "{}:\n  username: {BASIC_USER}\n  password: {BASIC_PASSWORD}\n",
            reg.host()
        ),
    );
    let out = ferry_plan(Some(&untrusted), &images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_cert_file_is_honoured() {
    let reg = registry_with(Mode::BasicTls, &["team/app"]).await;
    let work = Workdir::with_auth(format!(
        "{}:\n  username: {BASIC_USER}\n  password: {BASIC_PASSWORD}\n",
        reg.host()
    ));
    let images = images_for(&work, &reg, &["team/app"]);
    let ca = Pki::get().ca_cert.display().to_string();
    work.plan(&images, &[], &[("SSL_CERT_FILE", &ca)])
        .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_once_per_scope() {
    let reg = Registry::start(Mode::Token);
    let image = reg
        .seed_image("team/app", "v1", &ImageSpec::with_layers(3, 1, 256))
        .await;
    let tags: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    reg.tag_many("team/app", &tags, &image).await;
    let work = Workdir::trusting(&[&reg]);
    let images = work.images(format!(
        "{}/team/app: dst.example.com/team/app\n",
        reg.host()
    ));
    reg.issuer().unwrap().clear_requests();
    let out = work.plan(&images, &[], &[]);
    out.assert_success();
    assert_eq!(out.pairs().len(), 13, "{out}");
    // tags/list plus 13 HEADs share one pull token.
    let requests = reg.issuer().unwrap().requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        format!("{:?}", requests[0]).contains("repository:team/app:pull"),
        "{requests:?}"
    );
    assert!(
        format!("{:?}", requests[0]).contains(TOKEN_USER),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_takes_one_token_per_repository() {
    let p = Pair::start(Mode::Token, Mode::Token);
    let (src, dst) = (&p.src, &p.dst);
    for (i, tag) in ["v1", "v2", "v3"].iter().enumerate() {
        src.seed_image(
            "team/app",
            tag,
            &ImageSpec::with_layers(40 + i as u64, 2, 512),
        )
        .await;
    }
    let images = p.rule("team/app", "mirror/app");
    src.clear_requests();
    dst.clear_requests();
    p.sync(&images, &[]).assert_success();
    // The target's HEADs, its tags/list and every upload share one pull+push token; the
    // source's listing, manifests and blobs one pull token.
    let scopes = |reg: &Registry| -> Vec<Vec<String>> {
        reg.token_requests().into_iter().map(|r| r.scopes).collect()
    };
    assert_eq!(scopes(dst), [["repository:mirror/app:pull,push"]]);
    assert_eq!(scopes(src), [["repository:team/app:pull"]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_tokens_for_public_repositories() {
    let reg = registry_with(Mode::Token, &["public/app", "private/app"]).await;
    let work = Workdir::with_auth(format!(
        "{}:\n  ca: {}\n",
        reg.host(),
        Pki::get().ca_cert.display()
    ));
    let images = images_for(&work, &reg, &["public/app", "private/app"]);
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert_eq!(
        out.pairs(),
        vec![(
            format!("{}/public/app:v1", reg.host()),
            "dst.example.com/public/app:v1".into()
        )]
    );
    assert!(out.stderr.contains("private/app"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_over_plain_http_when_insecure() {
    let reg = registry_with(Mode::TokenHttp, &["team/app"]).await;
    let work = Workdir::trusting(&[&reg]);
    let images = images_for(&work, &reg, &["team/app"]);
    work.plan(&images, &[], &[]).assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_go_to_a_plain_http_realm() {
    let reg = registry_with(Mode::TokenInsecureRealm, &["team/app"]).await;
    let work = Workdir::trusting(&[&reg]);
    let images = images_for(&work, &reg, &["team/app"]);
    reg.issuer().unwrap().clear_requests();
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.contains("over plain HTTP"), "{out}");
    assert_eq!(reg.issuer().unwrap().requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn longest_matching_entry_wins() {
    let reg = registry_with(Mode::BasicTls, &["team/app", "other/app"]).await;
    let ca = Pki::get().ca_cert.display().to_string();
    let host = reg.host();
    // The host-wide entry is wrong; the namespace entry is right. A near-miss prefix
    // (`team-x`) must not match `team`.
    let work = Workdir::with_auth(format!(
        "{host}:\n  username: {BASIC_USER}\n  password: wrong\n  ca: {ca}\n\
         {host}/team:\n  username: {BASIC_USER}\n  password: {BASIC_PASSWORD}\n\
         {host}/othe:\n  username: {BASIC_USER}\n  password: {BASIC_PASSWORD}\n"
    ));
    let images = images_for(&work, &reg, &["team/app", "other/app"]);
    for _ in 0..3 {
        let out = work.plan(&images, &[], &[]);
        out.assert_code(1);
        assert_eq!(
            out.pairs(),
            vec![(
                format!("{host}/team/app:v1"),
                "dst.example.com/team/app:v1".into()
            )]
        );
        assert!(
            out.stderr
                .contains(&format!("rule \"{host}/other/app:v1\"")),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_references_in_the_auth_file() {
    let reg = registry_with(Mode::BasicTls, &["team/app"]).await;
    let work = Workdir::with_auth(format!(
        "{}:\n  username: $REG_USER\n  password: \"${{REG_PASS}}\"\n  ca: {}\n",
        reg.host(),
        Pki::get().ca_cert.display()
    ));
    let images = images_for(&work, &reg, &["team/app"]);
    work.plan(
        &images,
        &[],
        &[("REG_USER", BASIC_USER), ("REG_PASS", BASIC_PASSWORD)],
    )
    .assert_success();
    reg.clear_requests();
    let out = work.plan(&images, &[], &[("REG_USER", BASIC_USER)]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("auth.yaml") && out.stderr.contains("REG_PASS"),
        "{out}"
    );
    assert!(reg.requests().is_empty(), "bad input must contact nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_config_is_the_fallback() {
    use base64::Engine as _;
    let reg = registry_with(Mode::Token, &["team/app"]).await;
    // The auth file only says how to trust the registry; credentials come from Docker's config.
    let work = Workdir::with_auth(format!(
        "{}:\n  ca: {}\n",
        reg.host(),
        Pki::get().ca_cert.display()
    ));
    let images = images_for(&work, &reg, &["team/app"]);
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_USER}:{TOKEN_PASSWORD}"));
    let docker = work.path().join("docker");
    write_file(
        &docker,
        "config.json",
        format!(
            r#"{{"auths": {{"https://{}": {{"auth": "{encoded}"}}}}}}"#,
            reg.host()
        ),
    );
    let docker_dir = docker.display().to_string();
    let out = work.plan(&images, &[], &[("DOCKER_CONFIG", &docker_dir)]);
    out.assert_success();
    let requests = format!("{:?}", reg.issuer().unwrap().requests());
    assert!(requests.contains(TOKEN_USER), "{requests}");
    // Without it, the private repository is out of reach.
    work.plan(&images, &[], &[]).assert_code(1);
}
