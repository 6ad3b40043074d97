//! Issue 12's regression tests, one per row, named after it: a registry that lies or a
//! sender that replays, played by a fault proxy in front of a real `docker-registry` (a real
//! registry cannot misbehave this way on demand), or by a second proxy standing in for an
//! attacker's host that records what reaches it. Where a real registry cannot be told to
//! behave badly (a token lifetime, a chunk minimum, a redirect to plain HTTP on its own
//! port), the test's doc comment says what stands in for it.

use std::sync::{Arc, Mutex};

use ::ferry::copy::{Copier, CopyOptions, NoProgress};
use ::ferry::env::MapEnv;
use ::ferry::image::{ImageOptions, PlannedImage};
use ::ferry::reference::Reference;
use ::ferry::registry::Registries;
use support::{
    assert_same_raw, index_json, Fault, ImageSpec, IndexEntry, Mode, Pair, Pki, Proxy,
    ProxyRequest, Registry, Workdir, OCI_INDEX,
};

use crate::webhook::{came_true, serve, wait_for, SECRET};
use crate::LOOP_LIMIT;

/// A stand-in for an attacker's host: answers `status` to everything and records whether
/// each request carried an `Authorization` header.
fn attacker(status: u16, extra: Option<(&'static str, String)>) -> (Proxy, Arc<Mutex<Vec<bool>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let proxy = Proxy::start_url("http://127.0.0.1:9", move |r: &ProxyRequest| {
        log.lock()
            .unwrap()
            .push(r.header("authorization").is_some());
        let fault = Fault::status(status);
        Some(match &extra {
            Some((name, value)) => fault.with_header(name, value),
            None => fault,
        })
    });
    (proxy, seen)
}

/// A work directory whose auth file gives `registry`'s credentials under the proxy's host,
/// and none to `anonymous` (both plain HTTP).
fn credentials_for(proxy: &Proxy, registry: &Registry, anonymous: &Registry) -> Workdir {
    let (user, password) = registry.credentials().expect("a registry with credentials");
    Workdir::with_auth(format!(
        "{}: {{insecure: true, username: {user}, password: {password}}}\n{}: {{insecure: true}}\n",
        proxy.host(),
        anonymous.host()
    ))
}

/// Row 1: the Basic credentials of a target went to the host its upload `Location` named.
#[tokio::test(flavor = "multi_thread")]
async fn row1_an_upload_location_on_another_host_gets_no_credentials() {
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(1201, 1, 512))
        .await;
    let dst = Registry::start(Mode::BasicHttp);
    let (evil, seen) = attacker(500, None);
    let front = Proxy::passthrough(&dst);
    let elsewhere = format!("{}/v2/mirror/app/blobs/uploads/stolen", evil.base_url());
    front.set_hook(move |r: &ProxyRequest| {
        (r.method == "POST" && r.path.contains("/blobs/uploads/"))
            .then(|| Fault::status(202).with_header("location", &elsewhere))
    });
    // The source is anonymous; only the target's entry has credentials.
    let work = credentials_for(&front, &dst, &src);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        src.host(),
        front.host()
    ));
    let out = work.sync(&images, &[]);
    out.assert_code(1);
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the upload never went to the other host\n{out}"
    );
    assert!(
        seen.iter().all(|with| !with),
        "credentials reached the other host: {seen:?}"
    );
}

/// Row 2: after a blob GET was redirected to another host, that host's 401 named a realm,
/// and the registry's credentials went there.
#[tokio::test(flavor = "multi_thread")]
async fn row2_a_redirected_hosts_challenge_never_gets_the_registrys_credentials() {
    let src = Registry::start(Mode::BasicHttp);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(1202, 1, 512))
        .await;
    let (realm, realm_seen) = attacker(200, None);
    let challenge = format!("Bearer realm=\"{}/token\",service=evil", realm.base_url());
    let (evil, evil_seen) = attacker(401, Some(("www-authenticate", challenge)));
    let front = Proxy::passthrough(&src);
    let cdn = format!("{}/blob", evil.base_url());
    front.set_hook(move |r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/blobs/sha256:"))
            .then(|| Fault::status(307).with_header("location", &cdn))
    });
    let dst = Registry::start(Mode::Http);
    let work = credentials_for(&front, &src, &dst);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        front.host(),
        dst.host()
    ));
    let out = work.sync(&images, &[]);
    out.assert_code(1);
    let evil_seen = evil_seen.lock().unwrap().clone();
    assert!(
        !evil_seen.is_empty(),
        "the redirect was not followed\n{out}"
    );
    assert!(
        evil_seen.iter().all(|with| !with),
        "credentials followed the redirect"
    );
    assert!(
        realm_seen.lock().unwrap().is_empty(),
        "the other host's realm was asked for a token\n{out}"
    );
}

/// Row 3: a tag listed as `../../../victim/app/manifests/prod` made ferry push outside the
/// rule.
#[tokio::test(flavor = "multi_thread")]
async fn row3_a_listed_tag_that_is_a_path_is_skipped() {
    let src = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(1203, 1, 512))
        .await;
    let front = Proxy::passthrough(&src);
    front.set_hook(|r: &ProxyRequest| {
        (r.method == "GET" && r.path.starts_with("/v2/team/app/tags/list")).then(|| {
            Fault::Respond {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"name":"team/app","tags":["v1","../../../victim/app/manifests/prod"]}"#
                    .to_vec(),
            }
        })
    });
    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[front.host(), dst.host()]);
    let images = work.images(format!(
        "{}/team/app: {}/mirror/app\n",
        front.host(),
        dst.host()
    ));
    let out = work.sync(&images, &[]);
    out.assert_success();
    // Before this test's own look-ups: ferry's requests only.
    assert!(
        !dst.log_lines().iter().any(|line| line.contains("victim")),
        "a request reached outside the rule"
    );
    assert_eq!(dst.list_tags("mirror/app").await, ["v1"], "{out}");
    assert!(dst.list_tags("victim/app").await.is_empty());
    assert!(out.stderr.contains("not a valid tag"), "{out}");
}

/// Row 4: a replayed (old) job rolled a target tag back while the source tag had moved on.
#[tokio::test(flavor = "multi_thread")]
async fn row4_a_replayed_job_never_rolls_a_target_tag_back() {
    let src = Registry::start(Mode::Http);
    let old = src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(1204, 1, 512))
        .await;
    let new = src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(1205, 1, 512))
        .await;
    let dst = Registry::start(Mode::Http);
    let copier = crate::copier_for(&[&src, &dst]).await;
    // The job a push of the old image made, delivered late: its digest is the old one.
    let late = PlannedImage {
        source: Reference::parse(&format!("{}/team/app:v1", src.host())).unwrap(),
        digest: Some(old.digest.parse().unwrap()),
        targets: vec![Reference::parse(&format!("{}/mirror/app:v1", dst.host())).unwrap()],
        rule_options: Default::default(),
        pushed_referrer: None,
    };
    let (report, _) = copier
        .copy_image_with(&late, &ImageOptions::default())
        .await;
    assert!(report.succeeded(), "{report:?}");
    let copied = dst.fetch_manifest("mirror/app", "v1").await.unwrap();
    assert_eq!(
        copied.digest, new.digest,
        "the tag's current image is copied"
    );
    // And once the target has the new image, the late job leaves it alone.
    let (report, _) = copier
        .copy_image_with(&late, &ImageOptions::default())
        .await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        dst.fetch_manifest("mirror/app", "v1").await.unwrap().digest,
        new.digest
    );
}

/// Row 7: bodies were read whole; a tags page larger than any real one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn row7_an_oversized_tags_page_is_refused_not_held() {
    let src = Registry::start(Mode::Http);
    let front = Proxy::passthrough(&src);
    front.set_hook(|r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/tags/list")).then(|| {
            let mut body = br#"{"name":"team/app","tags":["#.to_vec();
            body.resize(20 << 20, b' ');
            body.extend_from_slice(b"]}");
            Fault::Respond {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            }
        })
    });
    let work = Workdir::insecure(&[front.host()]);
    let images = work.images(format!("{}/team/app: dst.example.com/a\n", front.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("tags/list page larger than 16777216 bytes"),
        "{out}"
    );
}

/// Row 9: a `Link` pointing at its own page was followed over and over.
#[tokio::test(flavor = "multi_thread")]
async fn row9_a_link_back_to_a_page_already_read_ends_the_listing() {
    let src = Registry::start(Mode::Http);
    let front = Proxy::passthrough(&src);
    front.set_hook(|r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/tags/list")).then(|| Fault::Respond {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "link".into(),
                    r#"</v2/team/app/tags/list>; rel="next""#.into(),
                ),
            ],
            body: br#"{"name":"team/app","tags":["v1"]}"#.to_vec(),
        })
    });
    let work = Workdir::insecure(&[front.host()]);
    let images = work.images(format!("{}/team/app: dst.example.com/a\n", front.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.contains("read already"), "{out}");
    assert_eq!(front.count("GET", "/tags/list"), 1);
}

/// Row 10: connections that never finished their headers stayed open, unbounded in number.
#[tokio::test(flavor = "multi_thread")]
async fn row10_serve_closes_connections_that_never_send_their_headers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let src = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[src.host()]);
    let images = work.images(format!(
        "{}/team/app: {}/mirror/app\n",
        src.host(),
        src.host()
    ));
    let port = support::free_port();
    let _served = serve(&work, &images, port).await;
    let address = format!("127.0.0.1:{port}");
    // Connections past the cap are closed as they arrive.
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut extra = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(LOOP_LIMIT, extra.read(&mut buffer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // A connection that starts its headers and never ends them is closed after the header
    // timeout (10 s), and the others with it.
    let mut slow = idle.pop().unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let read = tokio::time::timeout(LOOP_LIMIT, slow.read(&mut buffer)).await;
    assert!(read.is_ok(), "still open after {LOOP_LIMIT:?}");
    drop(idle);
    // And the server still answers.
    let health = format!("http://{address}/healthz");
    wait_for("ferry serve to answer again", async || {
        matches!(support::http_client().get(&health).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

/// Row 14: jobs answered 202 were lost when `ferry serve` was killed.
#[tokio::test(flavor = "multi_thread")]
async fn row14_jobs_accepted_before_a_sigkill_are_copied_after_a_restart() {
    let src = Registry::start(Mode::Http);
    let seeded = src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(1214, 1, 512))
        .await;
    let dst = Registry::start(Mode::Http);
    // The target hangs until the first server is gone.
    let front = Proxy::passthrough(&dst);
    front.set_hook(|_| Some(Fault::Delay(std::time::Duration::from_secs(600))));
    let work = Workdir::insecure(&[src.host(), front.host()]);
    let images = work.images(format!(
        "{}/team/app: {}/mirror/app\n",
        src.host(),
        front.host()
    ));
    let port = support::free_port();
    let mut first = serve(&work, &images, port).await;
    let notification = serde_json::json!({"events": [{
        "action": "push",
        "target": {
            "mediaType": seeded.media_type,
            "digest": seeded.digest,
            "repository": "team/app",
            "tag": "v1",
        },
        "request": {"host": src.host()},
    }]});
    let answer = support::http_client()
        .post(format!("http://127.0.0.1:{port}/hook"))
        .bearer_auth(SECRET)
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    wait_for("the copy to start", async || front.count("*", "/v2/") > 0).await;
    let mut child = first.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    front.set_hook(|_| None);
    let port = support::free_port();
    let mut second = serve(&work, &images, port).await;
    let copied = came_true(async || dst.fetch_manifest("mirror/app", "v1").await.is_some()).await;
    let out = second.terminate();
    assert!(copied, "the accepted job was lost\n{out}");
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
}

/// Row 5: the copier ran any well-formed job with every credential it held, and the planner
/// took rules from any invoker.
#[tokio::test(flavor = "multi_thread")]
async fn row5_jobs_and_invocations_outside_the_configured_rules_are_refused() {
    use ::ferry::error::Kind;
    use ::ferry::queue::MemoryQueue;
    use ::ferry::worker::{run_messages, JobPolicy, Message};
    let src = Registry::start(Mode::Http);
    src.seed_image("team/other", "v1", &ImageSpec::with_layers(1215, 1, 512))
        .await;
    let dst = Registry::start(Mode::Http);
    let rules = format!("{}/team/app: {}/mirror/app", src.host(), dst.host());
    let auth = format!(
        "{}: {{insecure: true}}\n{}: {{insecure: true}}\n",
        src.host(),
        dst.host()
    );
    let env = MapEnv::new([
        ("FERRY_IMAGES", rules.as_str()),
        ("FERRY_AUTH", auth.as_str()),
    ]);
    let inputs = ::ferry::input::load_inputs_from_env(&env, true, &::ferry::s3::S3::new())
        .await
        .unwrap();
    let registries = Arc::new(Registries::from_env(Arc::new(inputs.auth), &env));
    let copier = Copier::new(registries, CopyOptions::default(), Arc::new(NoProgress));
    let policy = JobPolicy::for_service(inputs.rules, false);
    let body = format!(
        r#"{{"v":1,"source":"{}/team/other:v1","targets":["{}/stolen/other:v1"]}}"#,
        src.host(),
        dst.host()
    );
    let (src_before, dst_before) = (src.log_lines().len(), dst.log_lines().len());
    let message = Message {
        id: "m1".into(),
        body,
    };
    let outcomes = run_messages(&copier, vec![message], None, &policy, None).await;
    let failure = outcomes[0].failure.as_ref().expect("the job is refused");
    assert_eq!(failure.kind, Kind::Denied, "{failure}");
    assert!(failure.message.contains("no rule copies"), "{failure}");
    assert_eq!(src.log_lines().len(), src_before, "the source was asked");
    assert_eq!(dst.log_lines().len(), dst_before, "the target was asked");

    // A planner invocation's own rules are refused unless the stack allows them.
    let planner = planner::Planner::from_env(Arc::new(env), Arc::new(MemoryQueue::default()))
        .await
        .unwrap();
    let error = planner
        .handle(&serde_json::json!({ "images": format!("{}/team/other: {}/stolen", src.host(), dst.host()) }))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("FERRY_ALLOW_INLINE_RULES"),
        "{error:#}"
    );
}

/// Row 6: a token `expires_in` of 2^64−1 panicked (exit 101) when added to the clock. The
/// harness's token issuer (the in-process realm both real registries trust) states that
/// lifetime while the JWTs it signs stay valid for five minutes.
#[tokio::test(flavor = "multi_thread")]
async fn row6_a_token_lifetime_of_2_to_the_64_is_capped_not_a_panic() {
    let p = Pair::start(Mode::Token, Mode::Token);
    p.src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(1206, 2, 512))
        .await;
    for registry in [&p.src, &p.dst] {
        let issuer = registry.issuer().expect("a token registry");
        issuer.set_exp_offset(Some(300));
        issuer.set_expires_in(u64::MAX);
    }
    let images = p.rule("team/app:v1", "mirror/app");
    let out = p.sync(&images, &[]);
    out.assert_success();
    assert!(p.src.tokens_issued() > 0 && p.dst.tokens_issued() > 0);
    // skopeo cannot read such a lifetime (a Go `int`): back to the default to compare.
    for registry in [&p.src, &p.dst] {
        registry
            .issuer()
            .unwrap()
            .set_expires_in(support::DEFAULT_EXPIRES_IN);
    }
    p.assert_copied("team/app:v1", "mirror/app:v1");
}

/// Row 6: an `OCI-Chunk-Min-Length` of 2^64−1 sized a buffer by it and panicked, and any
/// large value had ferry buffer whole blobs. A proxy in front of the target adds the header
/// to upload POST answers (a real registry states its own, modest minimum): ferry sends each
/// blob in one streaming PUT instead of chunks it would have to hold.
#[tokio::test(flavor = "multi_thread")]
async fn row6_a_chunk_minimum_of_2_to_the_64_gets_one_streaming_put() {
    let src = Registry::start(Mode::Http);
    let seeded = src
        .seed_image(
            "team/app",
            "v1",
            &ImageSpec::with_layers(1216, 2, 256 << 10),
        )
        .await;
    let dst = Registry::start(Mode::Http);
    let front = Proxy::start(&dst, |r: &ProxyRequest| {
        (r.method == "POST" && r.path.contains("/blobs/uploads/"))
            .then(|| Fault::AddResponseHeader("oci-chunk-min-length".into(), u64::MAX.to_string()))
    });
    let work = Workdir::insecure(&[src.host(), front.host()]);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        src.host(),
        front.host()
    ));
    let out = work.sync(&images, &[]);
    out.assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    let blobs = 1 + seeded.layer_digests.len();
    assert_eq!(front.count("PATCH", "/blobs/uploads/"), 0, "{out}");
    assert_eq!(front.count("PUT", "/blobs/uploads/"), blobs, "{out}");
}

/// Row 6: an auth-file key with a non-ASCII character panicked (a byte slice cut inside a
/// character). It is bad input: exit 2, naming the file and the key, nothing contacted.
#[tokio::test(flavor = "multi_thread")]
async fn row6_an_auth_key_with_a_non_ascii_character_is_bad_input() {
    let src = Registry::start(Mode::Http);
    src.clear_requests();
    let key = "€€€€€€€€€";
    let work = Workdir::with_auth(format!(
        "{}: {{insecure: true}}\n\"{key}\": {{username: u, password: p}}\n",
        src.host()
    ));
    let images = work.images(format!("{}/team/app: dst.example.com/a\n", src.host()));
    let out = work.plan(&images, &[], &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&work.auth().display().to_string()) && out.stderr.contains(key),
        "{out}"
    );
    assert!(src.requests().is_empty(), "bad input must contact nothing");
}

/// Row 8: an index whose children repeat was fetched and pushed once per entry, and nested
/// indexes multiplied that (1,641 requests for 3 distinct manifests). Here an outer index
/// names one inner index 6 times and the inner one names each of 3 images 5 times: a real
/// registry takes both. Passthrough proxies count what ferry asks of each side.
#[tokio::test(flavor = "multi_thread")]
async fn row8_repeated_children_are_fetched_and_pushed_once_each() {
    let src = Registry::start(Mode::Http);
    let parts = src
        .seed_index(
            "team/app",
            "parts",
            &[
                ("linux", "amd64", None),
                ("linux", "arm64", Some("v8")),
                ("linux", "arm", Some("v7")),
            ],
            true,
        )
        .await;
    let entries: Vec<IndexEntry<'_>> = (0..5)
        .flat_map(|_| &parts.children)
        .map(|child| IndexEntry {
            digest: &child.digest,
            size: child.bytes.len(),
            platform: (
                &child.platform.0,
                &child.platform.1,
                child.platform.2.as_deref(),
            ),
        })
        .collect();
    let (inner_type, inner) = index_json(true, &entries);
    let inner_digest = support::sha256_digest(&inner);
    src.push_manifest("team/app", &inner_digest, inner_type, &inner)
        .await;
    let nested =
        serde_json::json!({"mediaType": OCI_INDEX, "size": inner.len(), "digest": inner_digest});
    let outer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": vec![nested; 6],
    }))
    .unwrap();
    src.push_manifest("team/app", "v1", OCI_INDEX, &outer).await;
    // The outer index, the inner one and the three images.
    let distinct = 5;

    let (src_front, dst) = (Proxy::passthrough(&src), Registry::start(Mode::Http));
    let dst_front = Proxy::passthrough(&dst);
    let work = Workdir::insecure(&[src_front.host(), dst_front.host()]);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        src_front.host(),
        dst_front.host()
    ));
    let out = work.sync(&images, &[]);
    out.assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    let inner_ref = format!("team/app@{inner_digest}");
    assert_same_raw(&src, &inner_ref, &dst, &inner_ref.replace("team", "mirror"));
    for child in &parts.children {
        let copied = dst.fetch_manifest("mirror/app", &child.digest).await;
        assert_eq!(copied.map(|m| m.bytes), Some(child.bytes.clone()));
    }
    let gets = src_front.count("GET", "/manifests/");
    let puts = dst_front.count("PUT", "/manifests/");
    assert!(gets <= distinct + 2, "{gets} manifest GETs\n{out}");
    assert!(puts <= distinct, "{puts} manifest PUTs\n{out}");
}

/// Row 11: a Docker credential helper that never answered hung ferry. The helper here is a
/// script on `PATH` that sleeps; with `FERRY_CREDENTIAL_HELPER_TIMEOUT=1` ferry stops it and
/// fails naming it. The test allows ferry `LOOP_LIMIT` and kills it after that.
#[tokio::test(flavor = "multi_thread")]
async fn row11_a_credential_helper_that_never_answers_is_stopped() {
    use std::os::unix::fs::PermissionsExt as _;
    let src = Registry::start(Mode::BasicHttp);
    // The auth file has no credentials for the host, so Docker's config is asked.
    let work = Workdir::insecure(&[src.host()]);
    let docker = work.path().join("docker");
    support::write_file(
        &docker,
        "config.json",
        format!(r#"{{"credHelpers": {{"{}": "hang"}}}}"#, src.host()),
    );
    let pid_file = work.path().join("helper.pid");
    let helper_process = KillListed(pid_file.clone());
    let helper = support::write_file(
        &docker,
        "docker-credential-hang",
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 600\n",
            pid_file.display()
        ),
    );
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&docker);
    if let Some(inherited) = std::env::var_os("PATH") {
        path.push(":");
        path.push(inherited);
    }
    let images = work.images(format!("{}/team/app:v1: dst.example.com/a\n", src.host()));
    let mut ferry = support::ferry();
    ferry
        .arg("plan")
        .arg(format!("--images={}", images.display()))
        .arg(format!("--auth={}", work.auth().display()))
        .env("DOCKER_CONFIG", &docker)
        .env("PATH", path)
        .env(::ferry::auth::HELPER_TIMEOUT_VARIABLE, "1")
        .env(support::FAST_RETRIES.0, support::FAST_RETRIES.1);
    let out: support::Output = support::run_bounded(ferry, LOOP_LIMIT).into();
    out.assert_code(1);
    assert!(
        out.stderr.contains("docker-credential-hang") && out.stderr.contains("did not answer"),
        "{out}"
    );
    // The helper was asked, and is gone: stopped, not left behind.
    assert!(pid_file.exists(), "the helper was never asked\n{out}");
    assert_eq!(
        helper_process.running(),
        None,
        "the helper was left running"
    );
}

/// The process whose id a file holds, killed when dropped if it still runs: a credential
/// helper ferry failed to stop must not outlive the test.
struct KillListed(std::path::PathBuf);

impl KillListed {
    /// The process id, if the file names one that is still running.
    fn running(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()?;
        // SAFETY: signal 0 only checks whether the process exists.
        (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }
}

impl Drop for KillListed {
    fn drop(&mut self) {
        if let Some(pid) = self.running() {
            // SAFETY: the helper this test wrote, started by the ferry it ran.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Row 12: the platform filter paired index entries with children by position while the
/// children skipped entries registries do not hold, so it could keep the wrong child. The
/// index (taken by a real registry) lists a non-distributable entry first, then arm64, then
/// amd64; filtering for arm64 must keep the arm64 image and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn row12_a_filter_keeps_the_child_its_entry_names() {
    let src = Registry::start(Mode::Http);
    let parts = src
        .seed_index(
            "team/app",
            "parts",
            &[
                ("windows", "amd64", None),
                ("linux", "arm64", None),
                ("linux", "amd64", None),
            ],
            true,
        )
        .await;
    let entries: Vec<IndexEntry<'_>> = parts
        .children
        .iter()
        .map(|child| IndexEntry {
            digest: &child.digest,
            size: child.bytes.len(),
            platform: (
                &child.platform.0,
                &child.platform.1,
                child.platform.2.as_deref(),
            ),
        })
        .collect();
    let (_, bytes) = index_json(true, &entries);
    let mut index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"][0]["mediaType"] =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into();
    let wanted = index["manifests"][1].clone();
    src.push_manifest(
        "team/app",
        "v1",
        OCI_INDEX,
        &serde_json::to_vec(&index).unwrap(),
    )
    .await;

    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[src.host(), dst.host()]);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        src.host(),
        dst.host()
    ));
    let out = work.sync(&images, &["--arch=arm64"]);
    out.assert_success();
    let filtered = dst
        .fetch_manifest("mirror/app", "v1")
        .await
        .expect("pushed");
    let listed: serde_json::Value = serde_json::from_slice(&filtered.bytes).unwrap();
    assert_eq!(listed["manifests"], serde_json::json!([wanted]), "{out}");
    assert_eq!(filtered.digest, support::sha256_digest(&filtered.bytes));
    let [foreign, arm64, amd64] = &parts.children[..] else {
        unreachable!("three children seeded")
    };
    let arm64_ref = format!("team/app@{}", arm64.digest);
    assert_same_raw(&src, &arm64_ref, &dst, &arm64_ref.replace("team", "mirror"));
    for other in [foreign, amd64] {
        assert!(
            dst.fetch_manifest("mirror/app", &other.digest)
                .await
                .is_none(),
            "{} was copied\n{out}",
            other.platform.0
        );
    }
}

/// Row 13: `insecure` on one entry turned TLS verification off for every entry of that
/// host, credentialed ones included. Against a real TLS registry whose certificate ferry
/// is not told to trust: the credentialed entry alone fails verification and sends nothing;
/// adding `insecure` on a namespace of the same host is refused as bad input rather than
/// turning verification off under the credentials; trusting the test CA works.
#[tokio::test(flavor = "multi_thread")]
async fn row13_insecure_on_a_namespace_never_turns_tls_off_for_credentials() {
    let reg = Registry::start(Mode::BasicTls);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(1213, 1, 512))
        .await;
    reg.clear_requests();
    let (user, password) = reg.credentials().unwrap();
    let credentialed = format!(
        "{}: {{username: {user}, password: {password}}}\n",
        reg.host()
    );
    let work = Workdir::with_auth(&credentialed);
    let images = work.images(format!("{}/team/app:v1: dst.example.com/a\n", reg.host()));

    let out = work.plan(&images, &[], &[]);
    out.assert_code(1);
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out}");

    let namespace = format!("{}/elsewhere", reg.host());
    let mixed = work.write(
        "mixed.yaml",
        format!("{credentialed}{namespace}: {{insecure: true}}\n"),
    );
    let out = support::ferry_plan(Some(&mixed), &images, &[], &[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&namespace)
            && out.stderr.contains("insecure applies to the whole host"),
        "{out}"
    );
    assert!(
        reg.requests().is_empty(),
        "a request reached the registry over an unverified connection"
    );

    let trusted = work.write(
        "trusted.yaml",
        format!(
            "{}: {{username: {user}, password: {password}, ca: {:?}}}\n",
            reg.host(),
            Pki::get().ca_cert.display().to_string()
        ),
    );
    support::ferry_plan(Some(&trusted), &images, &[], &[]).assert_success();
}

/// One port that speaks TLS and plain HTTP, standing in for a registry that redirects to
/// `http://` on its own host and port (which reqwest treats as the same origin, keeping
/// `Authorization`). TLS connections are passed through to `behind` (a fault proxy in front
/// of a real registry); plain ones are recorded (whether each carried `Authorization`) and
/// answered 404. Stopped when dropped.
struct SplitPort {
    addr: std::net::SocketAddr,
    plain_seen: Arc<Mutex<Vec<bool>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SplitPort {
    async fn start(behind: String) -> SplitPort {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plain_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&plain_seen);
        let acceptor = support::net::tls_acceptor();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, behind, seen) = (acceptor.clone(), behind.clone(), seen.clone());
                connections.spawn(tokio::time::timeout(LOOP_LIMIT, async move {
                    let mut first = [0u8; 1];
                    // A TLS connection opens with a handshake record (0x16).
                    if stream.peek(&mut first).await.ok()? == 1 && first[0] == 0x16 {
                        let mut tls = acceptor.accept(stream).await.ok()?;
                        let mut upstream = tokio::net::TcpStream::connect(behind).await.ok()?;
                        tokio::io::copy_bidirectional(&mut tls, &mut upstream)
                            .await
                            .ok()?;
                    } else {
                        let with = answer_plain(stream).await?;
                        seen.lock().unwrap().push(with);
                    }
                    Some(())
                }));
                while connections.try_join_next().is_some() {}
            }
        });
        SplitPort {
            addr,
            plain_seen,
            task,
        }
    }
}

impl Drop for SplitPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a plain HTTP request's head (at most 64 KiB), answers 404 and closes; whether the
/// request carried `Authorization`.
async fn answer_plain(mut stream: tokio::net::TcpStream) -> Option<bool> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let with = String::from_utf8_lossy(&head)
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("authorization:"));
    let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = stream.write_all(answer).await;
    Some(with)
}

/// reqwest kept `Authorization` on a redirect from `https://` to `http://` on the same host
/// and port. A real TLS registry with Basic auth sits behind a fault proxy that redirects
/// blob GETs there, behind one port that also answers plain HTTP ([`SplitPort`]): ferry
/// refuses the redirect, and no credentials ever cross plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_plain_http_is_refused() {
    let src = Registry::start(Mode::BasicTls);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(1217, 1, 512))
        .await;
    let proxy = Proxy::passthrough(&src);
    let front = SplitPort::start(proxy.host()).await;
    let plain = format!("http://{}", front.addr);
    proxy.set_hook(move |r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/blobs/sha256:"))
            .then(|| Fault::status(307).with_header("location", &format!("{plain}{}", r.path)))
    });
    let dst = Registry::start(Mode::Http);
    let (user, password) = src.credentials().unwrap();
    let work = Workdir::with_auth(format!(
        "{}: {{username: {user}, password: {password}, ca: {:?}}}\n{}: {{insecure: true}}\n",
        front.addr,
        Pki::get().ca_cert.display().to_string(),
        dst.host()
    ));
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        front.addr,
        dst.host()
    ));
    let out = work.sync(&images, &["--retries=0"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("refusing a redirect from HTTPS to plain HTTP"),
        "{out}"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.status == Some(307)),
        "no blob GET was redirected\n{out}"
    );
    let seen = front.plain_seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|with| !with),
        "credentials crossed plain HTTP: {seen:?}\n{out}"
    );
}
