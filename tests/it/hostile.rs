//! Issue 12's regression tests, one per row, named after it: a registry that lies or a
//! sender that replays, played by a fault proxy in front of a real `docker-registry` (a real
//! registry cannot misbehave this way on demand), or by a second proxy standing in for an
//! attacker's host that records what reaches it.

use std::sync::{Arc, Mutex};

use ::ferry::copy::{Copier, CopyOptions, NoProgress};
use ::ferry::env::MapEnv;
use ::ferry::image::{ImageOptions, PlannedImage};
use ::ferry::reference::Reference;
use ::ferry::registry::Registries;
use support::{Fault, ImageSpec, Mode, Proxy, ProxyRequest, Registry, Workdir};

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
    let auth = format!(
        "{}: {{insecure: true}}\n{}: {{insecure: true}}\n",
        src.host(),
        dst.host()
    );
    let env = MapEnv::new([("FERRY_AUTH", auth.as_str())]);
    let inputs = ::ferry::input::load_inputs_from_env(&env, false).unwrap();
    let registries = Arc::new(Registries::from_env(Arc::new(inputs.auth), &env));
    let copier = Copier::new(registries, CopyOptions::default(), Arc::new(NoProgress));
    // The job a push of the old image made, delivered late: its digest is the old one.
    let late = PlannedImage {
        source: Reference::parse(&format!("{}/team/app:v1", src.host())).unwrap(),
        digest: Some(old.digest.parse().unwrap()),
        targets: vec![Reference::parse(&format!("{}/mirror/app:v1", dst.host())).unwrap()],
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
    support::assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
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
    let inputs = ::ferry::input::load_inputs_from_env(&env, true).unwrap();
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
    let outcomes = run_messages(&copier, vec![message], None, &policy).await;
    let failure = outcomes[0].failure.as_ref().expect("the job is refused");
    assert_eq!(failure.kind, Kind::Denied, "{failure}");
    assert!(failure.message.contains("no rule copies"), "{failure}");
    assert_eq!(src.log_lines().len(), src_before, "the source was asked");
    assert_eq!(dst.log_lines().len(), dst_before, "the target was asked");

    // A planner invocation's own rules are refused unless the stack allows them.
    let planner =
        planner::Planner::from_env(Arc::new(env), Arc::new(MemoryQueue::default())).unwrap();
    let error = planner
        .handle(&serde_json::json!({ "images": format!("{}/team/other: {}/stolen", src.host(), dst.host()) }))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("FERRY_ALLOW_INLINE_RULES"),
        "{error:#}"
    );
}
