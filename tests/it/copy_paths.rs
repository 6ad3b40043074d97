//! The copy engine's less travelled paths, each against a real registry with a proxy only
//! where the registry itself cannot produce the situation: schema 1 manifests, chunked
//! uploads asked for by `OCI-Chunk-Min-Length`, a mount the registry declines (202), a blob
//! redirected to another host, and Ctrl-C in the middle of a run.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    assert_same_raw, ferry, insecure_auth_yaml, read_json, Fault, ImageSpec, Mode, Pair, Proxy,
    ProxyRequest, Registry, Workdir, FAST_RETRIES,
};

/// The manifest without its JWS signatures: what a schema 1 digest covers. The registry
/// signs schema 1 afresh on every GET, so whole bodies never compare equal.
fn schema1_payload(bytes: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    v.as_object_mut().unwrap().remove("signatures");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn schema1_manifests_are_pushed_as_is() {
    let p = Pair::start(Mode::Http, Mode::BasicTls);
    let (src, dst) = (&p.src, &p.dst);
    let seeded = src
        .seed_schema1_image("old/app", "v1", &ImageSpec::with_layers(71, 2, 2048))
        .await;
    let images = p.rule("old/app:v1", "mirror/old");
    p.sync(&images, &[]).assert_success();
    let copied = dst.fetch_manifest("mirror/old", "v1").await.unwrap();
    assert_eq!(
        copied.media_type,
        "application/vnd.docker.distribution.manifest.v1+prettyjws"
    );
    assert_eq!(copied.digest, seeded.digest, "the payload digest is kept");
    let original = src.fetch_manifest("old/app", "v1").await.unwrap();
    let mut expected = schema1_payload(&original.bytes);
    // The name inside a schema 1 manifest is the source repository: pushed as-is.
    assert_eq!(expected["name"], "old/app");
    let actual = schema1_payload(&copied.bytes);
    expected["name"] = actual["name"].clone();
    assert_eq!(actual, expected);
    for layer in &seeded.layer_digests {
        assert!(dst.has_blob("mirror/old", layer).await, "{layer}");
    }
    // Nothing to do the second time.
    dst.clear_requests();
    p.sync(&images, &[]).assert_success();
    assert_eq!(dst.count("PUT", "/"), 0, "{:?}", dst.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_uploads_when_the_registry_asks_for_them() {
    const MIN_CHUNK: usize = 64 * 1024;
    let src = Registry::start(Mode::Http);
    let layer_size = 300 * 1024;
    let seeded = src
        .seed_image("team/app", "v1", &ImageSpec::with_layers(81, 1, layer_size))
        .await;
    let dst = Registry::start(Mode::Http);
    // distribution 2.8 never sends OCI-Chunk-Min-Length; the proxy adds it to the answer
    // that opens an upload session.
    let proxy = Proxy::start(&dst, |r: &ProxyRequest| {
        (r.method == "POST" && r.path.contains("/blobs/uploads/"))
            .then(|| Fault::AddResponseHeader("OCI-Chunk-Min-Length".into(), MIN_CHUNK.to_string()))
    });
    let work = Workdir::insecure(&[src.host(), proxy.host()]);
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        src.host(),
        proxy.host()
    ));
    work.sync(&images, &[]).assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    let patches = proxy.count("PATCH", "/blobs/uploads/");
    // The big layer alone needs ceil(300 KiB / 64 KiB) = 5 chunks; config one more.
    assert!(
        patches >= layer_size.div_ceil(MIN_CHUNK),
        "{patches} PATCHes: {:?}",
        proxy.requests()
    );
    let layer = dst
        .fetch_blob("mirror/app", &seeded.layer_digests[0])
        .await
        .unwrap();
    assert_eq!(layer.len(), layer_size);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_mount_falls_back_to_a_copy() {
    let reg = Registry::start(Mode::Http);
    reg.seed_image("team/app", "v1", &ImageSpec::with_layers(91, 2, 4096))
        .await;
    // The registry declines a mount (202 and an upload session) when the blob is not in the
    // `from` repository; pointing `from` at an empty repository makes it do so for real.
    let proxy = Proxy::start(&reg, |r: &ProxyRequest| {
        (r.method == "POST" && r.path.contains("mount=")).then(|| {
            let (path, query) = r.path.split_once('?').unwrap();
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("from", _)) => "from=nothing%2Fhere".to_string(),
                    _ => kv.to_string(),
                })
                .collect();
            Fault::Rewrite(format!("{path}?{}", query.join("&")))
        })
    });
    let work = Workdir::insecure(&[proxy.host()]);
    let images = work.images(format!("{0}/team/app:v1: {0}/copy/app\n", proxy.host()));
    let (out, json) = work.sync_reporting(&images, &[]);
    out.assert_success();
    assert_eq!(json["totals"]["blobs_mounted"], 0, "{json}");
    assert_eq!(json["totals"]["blobs_copied"], 3, "{json}");
    assert_eq!(proxy.count("POST", "mount="), 3, "{:?}", proxy.requests());
    assert_same_raw(&reg, "team/app:v1", &reg, "copy/app:v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_host_gets_no_credentials() {
    // The source needs Basic credentials; its blobs are "stored" elsewhere: a second,
    // anonymous registry holding the same blobs, reached under another host name.
    let src = Registry::start(Mode::BasicHttp);
    let storage = Registry::start(Mode::Http);
    let spec = ImageSpec::with_layers(101, 1, 8192);
    src.seed_image("team/app", "v1", &spec).await;
    storage.seed_image("team/app", "v1", &spec).await;
    let seen_at_storage: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = Arc::clone(&seen_at_storage);
    let cdn = Proxy::start(&storage, move |r: &ProxyRequest| {
        seen.lock()
            .unwrap()
            .push(r.header("authorization").map(str::to_string));
        None
    });
    // `localhost` rather than 127.0.0.1: another host to the client, the same machine.
    let cdn_base = format!(
        "http://localhost:{}",
        cdn.host().rsplit(':').next().unwrap()
    );
    let front = Proxy::start(&src, move |r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/blobs/sha256:")).then(|| {
            Fault::Respond {
                status: 307,
                headers: vec![],
                body: vec![],
            }
            .with_header("location", &format!("{cdn_base}{}", r.path))
        })
    });
    let dst = Registry::start(Mode::Http);
    let (user, password) = src.credentials().unwrap();
    let work = Workdir::with_auth(format!(
        "{}: {{insecure: true, username: {user}, password: {password}}}\n{}",
        front.host(),
        insecure_auth_yaml(&[dst.host()])
    ));
    let images = work.images(format!(
        "{}/team/app:v1: {}/mirror/app\n",
        front.host(),
        dst.host()
    ));
    work.sync(&images, &[]).assert_success();
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    let seen = seen_at_storage.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "config and layer fetched from storage");
    assert!(
        seen.iter().all(Option::is_none),
        "credentials followed a redirect: {seen:?}"
    );
    assert!(
        front
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.status == Some(307)),
        "{:?}",
        front.requests()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_what_is_in_flight_and_still_reports() {
    let src = Registry::start(Mode::Http);
    for i in 0..6u64 {
        src.seed_image(
            &format!("team/app{i}"),
            "v1",
            &ImageSpec::with_layers(110 + i * 3, 1, 2048),
        )
        .await;
    }
    // Every blob GET takes a while, so the run is still busy when Ctrl-C comes.
    let slow = Proxy::start(&src, |r: &ProxyRequest| {
        (r.method == "GET" && r.path.contains("/blobs/"))
            .then_some(Fault::Delay(Duration::from_millis(700)))
    });
    let dst = Registry::start(Mode::Http);
    let work = Workdir::insecure(&[slow.host(), dst.host()]);
    let rules: String = (0..6)
        .map(|i| {
            format!(
                "{}/team/app{i}:v1: {}/mirror/app{i}\n",
                slow.host(),
                dst.host()
            )
        })
        .collect();
    let images = work.images(rules);
    let report = work.report_path();
    let mut child = ferry()
        .args([
            format!("--auth={}", work.auth().display()),
            format!("--images={}", images.display()),
            "--proc=1".into(),
            format!("--report={}", report.display()),
        ])
        .env(FAST_RETRIES.0, FAST_RETRIES.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.count("GET", "/blobs/") == 0 {
        assert!(Instant::now() < deadline, "no blob transfer started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The run ends by itself: in-flight transfers finish, nothing new starts.
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        assert!(waited < Duration::from_secs(30), "ferry did not stop");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    let out: support::Output = child.wait_with_output().unwrap().into();
    out.assert_code(1);
    assert!(out.stderr.contains("interrupted"), "{out}");
    assert!(out.stderr.contains("ferry: 6 images:"), "{out}");
    let json = read_json(&report);
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), 6, "{json}");
    let interrupted = images
        .iter()
        .filter(|i| i["status"] == "failed" && i["reason"].as_str().unwrap().contains("interrupt"))
        .count();
    assert!(interrupted >= 1, "{json}");
    // An image either arrived whole or not at all.
    for i in 0..6 {
        let repo = format!("mirror/app{i}");
        let copied = images.iter().any(|im| {
            im["source"].as_str().unwrap().contains(&format!("app{i}:")) && im["status"] == "copied"
        });
        assert_eq!(
            dst.fetch_manifest(&repo, "v1").await.is_some(),
            copied,
            "{repo}: {json}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_the_summary() {
    let p = Pair::start(Mode::Http, Mode::Http);
    let src = &p.src;
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(121, 1, 1024))
        .await;
    let good = p.rules("good.yaml", &[("team/app:v1", "mirror/app")]);
    let out = p.sync(&good, &[]);
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("ferry: 1 image: 1 copied, 0 skipped, 0 failed;"),
        "{out}"
    );
    let out = p.sync(&good, &[]);
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("ferry: 1 image: 0 copied, 1 skipped, 0 failed;"),
        "{out}"
    );
    // A rule that cannot be resolved (unknown repository) fails the run and is named.
    let partly = p.rules(
        "partly.yaml",
        &[
            ("team/app:v1", "mirror/app"),
            ("team/ghost", "mirror/ghost"),
        ],
    );
    let out = p.sync(&partly, &[]);
    out.assert_code(1);
    assert!(out.stderr.contains("rule not resolved"), "{out}");
    assert!(out.stderr.contains("team/ghost"), "{out}");
    // Bad input: 2, and nothing contacted.
    let bad = p.write("bad.yaml", "just-a-string\n");
    src.clear_requests();
    let out = p.sync(&bad, &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("bad.yaml"), "{out}");
    assert!(src.requests().is_empty());
}
