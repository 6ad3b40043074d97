//! Webhook-triggered replication end to end: a real docker-registry configured with
//! `notifications: endpoints:` pointing at `ferry serve`; pushing to it makes ferry copy
//! exactly the pushed tags that the rules select. And the webhook Lambda handler with a
//! Function URL request fixture, and an ECR EventBridge event, queueing into moto.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{fixture, LOOP_LIMIT};
use ::ferry::env::MapEnv;
use ::ferry::job::Job;
use ::ferry::queue::Queue;
use serde_json::Value;
use support::{
    assert_same_raw, ferry, free_port, temp_dir, workspace_root, write_file, ImageSpec, Mode, Moto,
    Options, Registry, Workdir,
};
use webhook::WebhookFunction;

pub(crate) const SECRET: &str = "s3cret-for-tests";

/// `ferry serve` as a child process, stopped with SIGTERM when dropped.
pub(crate) struct Served(pub(crate) Option<Child>);

impl Served {
    pub(crate) fn terminate(&mut self) -> support::Output {
        let child = self.0.take().unwrap();
        signal_term(child.id());
        let deadline = Instant::now() + LOOP_LIMIT;
        let mut child = child;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ferry serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap().into()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal_term(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `ferry serve` on `port` with the work directory's auth file, `images`, and its state in
/// the work directory; returns once it answers.
pub(crate) async fn serve(work: &Workdir, images: &std::path::Path, port: u16) -> Served {
    let child = ferry()
        .args([
            "serve".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--auth={}", work.auth().display()),
            format!("--images={}", images.display()),
            format!("--state-dir={}", work.path().join("state").display()),
        ])
        .env("FERRY_WEBHOOK_SECRET", SECRET)
        .env(support::FAST_RETRIES.0, support::FAST_RETRIES.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let served = Served(Some(child));
    let health = format!("http://127.0.0.1:{port}/healthz");
    let http = support::http_client();
    wait_for(
        "ferry serve to listen",
        async || matches!(http.get(&health).send().await, Ok(r) if r.status() == 200),
    )
    .await;
    served
}

/// Whether `check` came true within the time limit.
pub(crate) async fn came_true(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + LOOP_LIMIT;
    while !check().await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

pub(crate) async fn wait_for(what: &str, check: impl AsyncFnMut() -> bool) {
    assert!(came_true(check).await, "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_notifications_make_ferry_serve_copy_the_pushed_tag() {
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/any/path/the/user/pasted");
    let src = Registry::start_with(
        Mode::Http,
        Options {
            notify: Some((
                hook,
                vec![("Authorization".into(), format!("Bearer {SECRET}"))],
            )),
            ..Options::default()
        },
    );
    let dst = Registry::start(Mode::Http);
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!(
        "{0}/team/app:v2,v3: {1}/mirror/app\n{0}/team/all: {1}/mirror/all\n",
        src.host(),
        dst.host()
    ));
    let mut served = serve(&work, &images, port).await;

    // Pushed: v1 (no rule selects it), v2 (selected), a tag of an all-tags rule, and an
    // unconfigured repository.
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(301, 1, 1024))
        .await;
    src.seed_image("team/app", "v2", &ImageSpec::with_layers(302, 2, 2048))
        .await;
    src.seed_index(
        "team/all",
        "latest",
        &[("linux", "amd64", None), ("linux", "arm64", Some("v8"))],
        true,
    )
    .await;
    src.seed_image("team/other", "v1", &ImageSpec::with_layers(304, 1, 1024))
        .await;

    let copied = came_true(async || {
        dst.fetch_manifest("mirror/app", "v2").await.is_some()
            && dst.fetch_manifest("mirror/all", "latest").await.is_some()
    })
    .await;
    if !copied {
        panic!("v2 and the index were not copied\n{}", served.terminate());
    }
    assert_same_raw(&src, "team/app:v2", &dst, "mirror/app:v2");
    assert_same_raw(&src, "team/all:latest", &dst, "mirror/all:latest");
    let out = served.terminate();
    out.assert_success();
    assert_eq!(dst.list_tags("mirror/app").await, ["v2"], "{out}");
    assert!(dst.list_tags("mirror/other").await.is_empty());
    assert!(dst.list_tags("team/other").await.is_empty());
    // The index's children, pushed by digest alone, are two jobs more: each reads its
    // manifest (no `subject`: not a referrer) and copies nothing.
    assert!(
        out.stderr
            .contains("ferry: serve: 4 jobs succeeded, 0 failed"),
        "{out}"
    );
    assert!(
        out.stderr.matches("not a referrer: nothing copied").count() == 2,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ferry_serve_refuses_what_it_should() {
    let port = free_port();
    let dir = temp_dir();
    let images = write_file(
        dir.path(),
        "images.yaml",
        "quay.io/team/app: 127.0.0.1:1/mirror/app\n",
    );
    let child = ferry()
        .args([
            "serve".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--images={}", images.display()),
            format!("--state-dir={}", dir.path().join("state").display()),
        ])
        .env("FERRY_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = Served(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let http = support::http_client();
    wait_for("ferry serve to listen", async || {
        matches!(http.get(format!("{base}/healthz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    let body = std::fs::read(workspace_root().join("tests/fixtures/webhook/quay.json")).unwrap();
    let post = |path: &str| http.post(format!("{base}{path}")).body(body.clone());
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(http.get(format!("{base}/hook")).send().await.unwrap()),
        405
    );
    assert_eq!(status(post("/hook").send().await.unwrap()), 401);
    assert_eq!(
        status(post("/hook").bearer_auth("wrong").send().await.unwrap()),
        401
    );
    let big = vec![b' '; (1 << 20) + 10];
    let response = http
        .post(format!("{base}/hook"))
        .bearer_auth(SECRET)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(status(response), 413);
    let response = http
        .post(format!("{base}/hook"))
        .bearer_auth(SECRET)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(status(response), 400);
    // Quay can only put the secret in the URL.
    let response = post(&format!("/hook?token={SECRET}")).send().await.unwrap();
    let code = status(response);
    assert!(code == 200 || code == 202, "{code}");
    served.terminate().assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_function_queues_a_function_url_delivery_and_an_ecr_event() {
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = Arc::new(moto.queue(&url));
    let env = MapEnv::new([
        (
            "FERRY_IMAGES",
            "registry.example.com:5000/team/app: 127.0.0.1:5999/mirror/app\n\
             123456789012.dkr.ecr.us-west-2.amazonaws.com/my-repository-name: 127.0.0.1:5999/mirror/ecr",
        ),
        ("FERRY_WEBHOOK_SECRET", SECRET),
    ]);
    let function = WebhookFunction::from_env(Arc::new(env.clone()), queue.clone())
        .await
        .unwrap();

    let mut request = fixture("function-url-request.json");
    let mut notification = fixture("webhook/distribution.json");
    // The documented example pushes by digest; registries pushing a tag name it too.
    notification["events"][0]["target"]["tag"] = Value::from("v1");
    request["body"] = Value::from(notification.to_string());
    request["headers"]["authorization"] = Value::from(format!("Bearer {SECRET}"));
    let response = function.handle(request.clone()).await.unwrap();
    assert_eq!(response["statusCode"], 202, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["queued"], 1, "{body}");
    let deliveries = queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let job = Job::parse(&deliveries[0].body).unwrap();
    assert!(
        job.source.starts_with("registry.example.com:5000/team/app"),
        "{job:?}"
    );
    assert_eq!(job.targets.len(), 1);

    // The wrong secret: 401 and nothing queued.
    request["headers"]["authorization"] = Value::from("Bearer nope");
    let response = function.handle(request).await.unwrap();
    assert_eq!(response["statusCode"], 401, "{response}");

    // ECR pushes come straight from EventBridge.
    let outcome = function.handle(fixture("webhook/ecr.json")).await.unwrap();
    assert_eq!(outcome["queued"], 1, "{outcome}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(moto.message_count(&url).await, 2);
}

/// A push by digest alone may be a referrer's (notation, `oras attach`), which the webhook
/// cannot read: the job is that digest's, marked as a pushed referrer for the copier to
/// read. A rule with `referrers: false` makes none.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_function_marks_a_push_by_digest_alone_as_a_possible_referrer() {
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = Arc::new(moto.queue(&url));
    let function = async |images: &str| {
        let env = MapEnv::new([("FERRY_IMAGES", images), ("FERRY_WEBHOOK_SECRET", SECRET)]);
        WebhookFunction::from_env(Arc::new(env), queue.clone())
            .await
            .unwrap()
    };
    // The documented example: a manifest pushed by digest, no tag.
    let notification = fixture("webhook/distribution.json");
    assert!(notification["events"][0]["target"].get("tag").is_none());
    let digest = notification["events"][0]["target"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut request = fixture("function-url-request.json");
    request["body"] = Value::from(notification.to_string());
    request["headers"]["authorization"] = Value::from(format!("Bearer {SECRET}"));

    let all_tags = function("registry.example.com:5000/team/app: 127.0.0.1:5999/mirror/app").await;
    let response = all_tags.handle(request.clone()).await.unwrap();
    assert_eq!(response["statusCode"], 202, "{response}");
    let deliveries = queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert!(
        deliveries[0]
            .body
            .contains(&format!(r#""pushed_referrer":"{digest}""#)),
        "{}",
        deliveries[0].body
    );
    let job = Job::parse(&deliveries[0].body).unwrap();
    assert_eq!(
        job.source,
        format!("registry.example.com:5000/team/app@{digest}")
    );
    assert_eq!(job.targets, [format!("127.0.0.1:5999/mirror/app@{digest}")]);
    queue.delete(&deliveries[0].receipt).await.unwrap();

    let quiet = function(
        "registry.example.com:5000/team/app: {to: 127.0.0.1:5999/mirror/app, referrers: false}",
    )
    .await;
    let response = quiet.handle(request).await.unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert!(
        body["ignored"]
            .as_str()
            .unwrap()
            .contains("no rule selects"),
        "{body}"
    );
    assert!(queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}
