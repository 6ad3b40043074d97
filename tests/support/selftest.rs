//! Self-tests of the support crate against real registries: every mode
//! starts, seeds an image and an index, and reads them back with raw
//! requests (and skopeo for the TLS modes); the token issuer grants and
//! records as documented; the proxy forwards, rewrites upload locations and
//! injects faults; and the distribution 2.8 behaviours documented in
//! `registry.rs` still hold.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::*;

fn manifest_url(base: &str, repo: &str, reference: &str) -> String {
    format!("{base}/v2/{repo}/manifests/{reference}")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `key="value"` parameters of a `WWW-Authenticate` challenge.
fn challenge_param(challenge: &str, key: &str) -> Option<String> {
    let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    let len = challenge[start..].find('"')?;
    Some(challenge[start..start + len].to_owned())
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url JWT payload");
    serde_json::from_slice(&raw).expect("JSON claims")
}

fn platforms() -> [(&'static str, &'static str, Option<&'static str>); 2] {
    [("linux", "amd64", None), ("linux", "arm64", Some("v8"))]
}

#[tokio::test(flavor = "multi_thread")]
async fn http_registry_round_trip_and_access_log() {
    let reg = Registry::start(Mode::Http);
    assert!(reg.base_url().starts_with("http://127.0.0.1:"));
    let img = reg
        .seed_image("lib/app", "v1", &ImageSpec::with_layers(1, 2, 4096))
        .await;
    assert_eq!(img.layer_digests.len(), 2);
    let idx = reg
        .seed_index("lib/multi", "latest", &platforms(), false)
        .await;
    assert_eq!(idx.children.len(), 2);

    let client = http_client();
    let resp = client
        .get(manifest_url(&reg.base_url(), "lib/app", "v1"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), img.digest);
    assert_eq!(header(&resp, "content-type"), DOCKER_MANIFEST);
    assert_eq!(resp.bytes().await.unwrap(), img.bytes);

    let list = reg.fetch_manifest("lib/multi", "latest").await.unwrap();
    assert_eq!(
        (list.media_type.as_str(), &list.bytes),
        (DOCKER_MANIFEST_LIST, &idx.bytes)
    );
    assert_eq!(list.digest, idx.digest);
    let child = reg
        .fetch_manifest("lib/multi", &idx.children[1].digest)
        .await
        .unwrap();
    assert_eq!(child.bytes, idx.children[1].bytes);
    let config: Value = serde_json::from_slice(
        &reg.fetch_blob("lib/multi", &idx.children[1].config_digest)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["architecture"].as_str(), config["variant"].as_str()),
        (Some("arm64"), Some("v8"))
    );
    assert_eq!(
        reg.fetch_blob("lib/app", &img.layer_digests[0])
            .await
            .unwrap(),
        layer(1, 4096)
    );
    assert!(reg.fetch_manifest("lib/app", "nope").await.is_none());

    // Access-log counting, after seeding is forgotten.
    reg.clear_requests();
    assert!(reg.requests().is_empty(), "{:?}", reg.requests());
    let blob_url = format!("{}/v2/lib/app/blobs/{}", reg.base_url(), img.config_digest);
    client
        .head(&blob_url)
        .header("user-agent", "support-selftest")
        .send()
        .await
        .unwrap();
    client.get(&blob_url).send().await.unwrap();
    let reqs = reg.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(
        (
            reqs[0].method.as_str(),
            reqs[0].status,
            reqs[0].user_agent.as_str()
        ),
        ("HEAD", 200, "support-selftest")
    );
    assert_eq!(reg.count("GET", "/blobs/sha256:"), 1);
    assert_eq!(reg.count("head", &img.config_digest), 1);
    assert_eq!(reg.tokens_issued(), 0);
}

/// Distribution 2.8.2 ignores `n`/`last` on tags/list: no pagination, no
/// `Link` header, storage order. If this starts failing, the registry
/// package changed and the pagination tests need a second look.
#[tokio::test(flavor = "multi_thread")]
async fn tags_list_is_not_paginated_by_distribution_2_8() {
    let reg = Registry::start(Mode::Http);
    let img = reg
        .seed_image("many", "base", &ImageSpec::with_layers(5, 1, 64))
        .await;
    let tags: Vec<String> = (0..40).map(|i| format!("t{i:03}")).collect();
    let t = std::time::Instant::now();
    reg.tag_many("many", &tags, &img).await;
    eprintln!("tag_many(40): {:?}", t.elapsed());
    let resp = http_client()
        .get(format!("{}/v2/many/tags/list?n=2", reg.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("link").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["tags"].as_array().unwrap().len(), 41, "{body}");
    assert_eq!(reg.list_tags("many").await.len(), 41);
}

/// A Docker schema 2 manifest fetched by tag without schema 2 in `Accept` is
/// down-converted to schema 1 (our configs carry `history` so that works).
#[tokio::test(flavor = "multi_thread")]
async fn tag_get_without_accept_converts_to_schema1() {
    let reg = Registry::start(Mode::Http);
    reg.seed_image("conv", "t", &ImageSpec::with_layers(7, 1, 32))
        .await;
    let resp = http_client()
        .get(manifest_url(&reg.base_url(), "conv", "t"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        seed::DOCKER_MANIFEST_V1_SIGNED
    );

    // A real schema 1 manifest: its digest is not sha256 of the body, and
    // asking for schema 2 still gets schema 1.
    let old = reg
        .seed_schema1_image("conv", "old", &ImageSpec::with_layers(8, 2, 32))
        .await;
    assert_ne!(old.digest, sha256_digest(&old.bytes));
    let fetched = reg.fetch_manifest("conv", "old").await.unwrap();
    assert_eq!(fetched.media_type, seed::DOCKER_MANIFEST_V1_SIGNED);
    assert_eq!(fetched.digest, old.digest);
    let by_digest = reg.fetch_manifest("conv", &old.digest).await.unwrap();
    assert_eq!(by_digest.digest, old.digest);
    assert_eq!(reg.list_tags("conv").await, ["old", "t"]);
    let schema1: Value = serde_json::from_slice(&fetched.bytes).unwrap();
    assert_eq!(schema1["schemaVersion"], 1);
    assert_eq!(schema1["fsLayers"].as_array().unwrap().len(), 2);
    // Distribution stores schema 1 without signatures and re-signs it on
    // every read: the bytes change per GET, only the digest is stable.
    let again = reg.fetch_manifest("conv", "old").await.unwrap();
    assert_eq!(again.digest, old.digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_tls_registry_and_skopeo() {
    let reg = Registry::start(Mode::BasicTls);
    assert!(reg.is_tls() && reg.base_url().starts_with("https://"));
    let img = reg
        .seed_image(
            "team/app",
            "1.0",
            &ImageSpec::with_layers(10, 1, 1000).oci(true),
        )
        .await;
    let idx = reg.seed_index("team/multi", "v1", &platforms(), true).await;
    assert_eq!(idx.media_type, OCI_INDEX);

    let client = http_client();
    let url = manifest_url(&reg.base_url(), "team/app", "1.0");
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "www-authenticate"),
        format!("Basic realm=\"{BASIC_REALM}\"")
    );
    let resp = client
        .get(&url)
        .basic_auth(BASIC_USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(&url)
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), img.bytes);

    assert_eq!(skopeo_inspect_raw(&reg, "team/app:1.0"), img.bytes);
    assert_eq!(skopeo_inspect_raw(&reg, "team/multi:v1"), idx.bytes);
    assert_eq!(
        skopeo_inspect_raw(&reg, &format!("team/multi@{}", idx.children[0].digest)),
        idx.children[0].bytes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_issuer_and_skopeo() {
    let reg = Registry::start(Mode::Token);
    let issuer = reg.issuer().expect("token mode has an issuer");
    assert!(issuer.realm().starts_with("https://127.0.0.1:"));
    let img = reg
        .seed_image("private/app", "1", &ImageSpec::with_layers(20, 1, 512))
        .await;
    let public = reg
        .seed_image("public/app", "1", &ImageSpec::with_layers(21, 1, 512))
        .await;
    reg.seed_index("private/multi", "1", &platforms(), false)
        .await;
    assert_eq!(
        reg.tokens_issued(),
        0,
        "seeding must not use the issuer over HTTP"
    );

    let client = http_client();
    let url = manifest_url(&reg.base_url(), "private/app", "1");
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = header(&resp, "www-authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(
        challenge_param(&challenge, "realm").unwrap(),
        issuer.realm()
    );
    assert_eq!(
        challenge_param(&challenge, "service").unwrap(),
        TOKEN_SERVICE
    );
    assert_eq!(
        challenge_param(&challenge, "scope").unwrap(),
        "repository:private/app:pull"
    );

    let token_url = |repo: &str| {
        format!(
            "{}?service={TOKEN_SERVICE}&scope=repository:{repo}:pull&scope=repository:other:pull,push",
            issuer.realm()
        )
    };
    // Authenticated: everything asked for.
    let resp = client
        .get(token_url("private/app"))
        .basic_auth(TOKEN_USER, Some(TOKEN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], DEFAULT_EXPIRES_IN);
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    let token = body["token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(
        (claims["aud"].as_str(), claims["iss"].as_str()),
        (Some(TOKEN_SERVICE), Some(TOKEN_ISSUER))
    );
    assert_eq!(claims["access"].as_array().unwrap().len(), 2);
    let resp = client
        .get(&url)
        .bearer_auth(&token)
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), img.bytes);

    // Anonymous: empty grant for private repos, pull on public/.
    let anon: Value = client
        .get(token_url("private/app"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let anon_token = anon["token"].as_str().unwrap();
    assert_eq!(jwt_claims(anon_token)["access"], serde_json::json!([]));
    let resp = client
        .get(&url)
        .bearer_auth(anon_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let anon: Value = client
        .get(token_url("public/app"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = client
        .get(manifest_url(&reg.base_url(), "public/app", "1"))
        .bearer_auth(anon["token"].as_str().unwrap())
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), public.bytes);

    // Wrong password.
    let resp = client
        .get(token_url("private/app"))
        .basic_auth(TOKEN_USER, Some(crate::BASIC_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let reqs = reg.token_requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reg.tokens_issued(), 3);
    assert!(reqs[0].authenticated && !reqs[1].authenticated && !reqs[3].authenticated);
    assert_eq!(
        reqs[0].scopes,
        ["repository:private/app:pull", "repository:other:pull,push"]
    );
    assert_eq!(reqs[0].granted[1].actions, ["pull", "push"]);
    assert_eq!(reqs[0].service.as_deref(), Some(TOKEN_SERVICE));
    assert!(reqs[1].granted.is_empty());
    assert_eq!(reqs[2].granted[0].actions, ["pull"]);
    assert_eq!(
        (reqs[3].status, reqs[3].user.as_deref()),
        (401, Some(TOKEN_USER))
    );

    // skopeo does the whole dance itself.
    reg.clear_requests();
    assert_eq!(skopeo_inspect_raw(&reg, "private/app:1"), img.bytes);
    assert!(reg.tokens_issued() >= 1);
    assert!(reg.token_requests().iter().all(|r| r.authenticated));
    assert_eq!(
        reg.count("GET", "/v2/private/app/manifests/1"),
        1,
        "{:?}",
        reg.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_http_insecure_realm_and_expiry() {
    let reg = Registry::start_with(
        Mode::TokenHttp,
        Options {
            token_expires_in: Some(5),
            ..Options::default()
        },
    );
    let insecure_realm = Registry::start(Mode::TokenInsecureRealm);
    assert!(reg.base_url().starts_with("http://"));
    assert!(insecure_realm.base_url().starts_with("https://"));
    let client = http_client();
    for r in [&reg, &insecure_realm] {
        let img = r
            .seed_image("app", "1", &ImageSpec::with_layers(30, 1, 100))
            .await;
        let url = manifest_url(&r.base_url(), "app", "1");
        let resp = client.get(&url).send().await.unwrap();
        let realm = challenge_param(&header(&resp, "www-authenticate"), "realm").unwrap();
        assert!(realm.starts_with("http://127.0.0.1:"), "{realm}");
        let body: Value = client
            .get(format!(
                "{realm}?service={TOKEN_SERVICE}&scope=repository:app:pull"
            ))
            .basic_auth(TOKEN_USER, Some(TOKEN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let resp = client
            .get(&url)
            .bearer_auth(body["token"].as_str().unwrap())
            .header("accept", DOCKER_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap(), img.bytes);
    }
    assert_eq!(
        skopeo_inspect_raw(&reg, "app:1").len(),
        reg.fetch_manifest("app", "1").await.unwrap().bytes.len()
    );

    // Lifetime knobs: expires_in is reported; distribution allows 60 s of
    // leeway on `exp`, so only a token expired for longer is refused.
    let issuer = reg.issuer().unwrap();
    let url = manifest_url(&reg.base_url(), "app", "1");
    let fetch = |offset: Option<i64>| {
        issuer.set_exp_offset(offset);
        let token = issuer.mint(&["repository:app:pull"]);
        let client = client.clone();
        let url = url.clone();
        async move {
            let resp = client
                .get(url)
                .bearer_auth(token)
                .header("accept", DOCKER_MANIFEST)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    assert_eq!(fetch(Some(-10)).await, 200);
    assert_eq!(fetch(Some(-120)).await, 401);
    assert_eq!(fetch(None).await, 200);
    assert_eq!(
        jwt_claims(&issuer.mint(&[]))["exp"].as_i64().unwrap()
            - jwt_claims(&issuer.mint(&[]))["iat"].as_i64().unwrap(),
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_forwards_counts_and_injects_faults() {
    let reg = Registry::start(Mode::BasicTls);
    let img = reg
        .seed_image("app", "1", &ImageSpec::with_layers(40, 1, 300_000))
        .await;
    let proxy = Proxy::fail_first(
        &reg,
        1,
        matching("GET", "/manifests/"),
        Fault::unavailable(),
    );
    assert!(proxy.host().starts_with("127.0.0.1:"));
    let client = http_client();
    let url = manifest_url(&proxy.base_url(), "app", "1");
    let get = || {
        client
            .get(&url)
            .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
            .header("accept", DOCKER_MANIFEST)
    };
    let resp = get().send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let resp = get().send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), img.digest);
    assert_eq!(resp.bytes().await.unwrap(), img.bytes);
    assert_eq!(proxy.count("GET", "/manifests/"), 2);
    assert_eq!(proxy.faults_injected(), 1);
    assert_eq!(proxy.requests()[0].status, Some(503));
    assert_eq!(proxy.requests()[1].status, Some(200));
    assert_eq!(reg.count("GET", "/v2/app/manifests/1"), 1);

    // Upload through the proxy: the Location points back at the proxy and
    // the streamed body reaches the registry.
    let data = layer(41, 200_000);
    let digest = sha256_digest(&data);
    let resp = client
        .post(format!("{}/v2/app/blobs/uploads/", proxy.base_url()))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location");
    assert!(location.starts_with(&proxy.base_url()), "{location}");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let resp = client
        .put(format!("{location}&digest={digest}"))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    assert!(reg.has_blob("app", &digest).await);

    // Connection-level and body faults.
    let blob_url = format!("{}/v2/app/blobs/{}", proxy.base_url(), img.layer_digests[0]);
    let get_blob = || {
        client
            .get(&blob_url)
            .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
            .send()
    };
    proxy.set_hook(|_| Some(Fault::Reset));
    assert!(get_blob().await.is_err());
    proxy.set_hook(|_| Some(Fault::Close));
    assert!(get_blob().await.is_err());
    proxy.set_hook(|_| Some(Fault::TruncateBody(1000)));
    let resp = get_blob().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
    proxy.set_hook(|_| Some(Fault::CorruptBody));
    let body = get_blob().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 300_000);
    assert_ne!(sha256_digest(&body), img.layer_digests[0]);
    proxy.set_hook(|_| Some(Fault::too_many_requests(1)));
    let resp = get_blob().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), header(&resp, "retry-after")),
        (429, "1".into())
    );
    proxy.set_hook(|_| Some(Fault::Delay(Duration::from_millis(50))));
    let body = get_blob().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), img.layer_digests[0]);
    assert_eq!(proxy.count("*", "/blobs/sha256:"), 6);

    // A stalled body: headers and the first bytes, then nothing until the
    // client's read timeout.
    proxy.set_hook(|_| Some(Fault::StallBody { after: 1000 }));
    let impatient = crate::net::client_builder()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let resp = impatient
        .get(&blob_url)
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let err = resp.bytes().await.unwrap_err();
    assert!(err.is_timeout() || err.is_body(), "{err:?}");

    // An upload reset partway through its body never reaches the registry.
    proxy.set_hook(|r: &ProxyRequest| {
        (r.method == "PUT").then_some(Fault::ResetMidUpload { after: 4096 })
    });
    let resp = client
        .post(format!("{}/v2/app/blobs/uploads/", proxy.base_url()))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    let other = layer(42, 100_000);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        other.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let put = client
        .put(format!("{location}&digest={}", sha256_digest(&other)))
        .basic_auth(BASIC_USER, Some(BASIC_PASSWORD))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(put.is_err(), "{put:?}");
    assert!(!reg.has_blob("app", &sha256_digest(&other)).await);
    let tally = proxy.fault_tally();
    assert_eq!((tally["stall"], tally["upload reset"]), (1, 1), "{tally:?}");
}

#[test]
fn seeded_rng_repeats_per_seed() {
    let draws = |seed| {
        let mut rng = SeededRng::new(seed);
        (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
    };
    assert_eq!(draws(1), draws(1));
    assert_ne!(draws(1), draws(2));
    let mut rng = SeededRng::new(3);
    let hits = (0..10_000).filter(|_| rng.chance(0.3)).count();
    assert!((2_700..3_300).contains(&hits), "{hits}");
    assert_eq!(rng.below(0), 0);
}

#[test]
fn drop_kills_the_registry_process() {
    let reg = Registry::start(Mode::BasicHttp);
    let pid = reg.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(reg);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn pki_files_exist() {
    let pki = Pki::get();
    for p in [
        &pki.ca_cert,
        &pki.server_cert,
        &pki.server_key,
        &pki.token_key,
        &pki.token_cert,
    ] {
        assert!(p.is_file(), "{}", p.display());
    }
    assert!(pki.ca_dir().join("ca.crt").is_file());
}

#[test]
fn write_file_creates_parents() {
    let dir = temp_dir();
    let p = write_file(dir.path(), "a/b/c.json", "{}");
    assert_eq!(std::fs::read_to_string(p).unwrap(), "{}");
}

/// Builds and runs the real binary; ignored by default because the CLI is
/// developed separately (run with `--ignored`).
#[test]
#[ignore]
fn ferry_binary_runs() {
    let out = run_ferry(&["--help"], &[]);
    assert!(out.success(), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_urls_and_password_grant() {
    let reg = Registry::start_with(
        Mode::TokenHttp,
        Options {
            relative_urls: true,
            ..Options::default()
        },
    );
    let client = http_client();
    let realm = reg.issuer().unwrap().realm();
    let form = |password: &str| {
        format!("grant_type=password&service={TOKEN_SERVICE}&client_id=t&username={TOKEN_USER}&password={password}&scope=repository:app:pull,push")
    };
    let resp = client
        .post(&realm)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = client
        .post(&realm)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(TOKEN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = client
        .post(format!("{}/v2/app/blobs/uploads/", reg.base_url()))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(header(&resp, "location").starts_with("/v2/app/blobs/uploads/"));
    let reqs = reg.token_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].method, "POST");
    assert!(reqs[1].authenticated);
    assert_eq!(reqs[1].granted[0].actions, ["pull", "push"]);
}
