//! The serverless engine against real parts: SQS is moto, registries are docker-registry.
//! The planner and copier Lambda handlers are called directly with event fixtures; `ferry
//! plan --queue-url` and `ferry worker` run as processes on the same queue.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{fixture, receive_at_least, LOOP_LIMIT};
use aws_lambda_events::event::sqs::SqsEvent;
use copier::CopierFunction;
use ferry::env::MapEnv;
use ferry::job::Job;
use ferry::queue::{Delivery, Queue};
use planner::Planner;
use serde_json::Value;
use support::{
    assert_same_raw, run_ferry, temp_dir, workspace_root, write_file, ImageSpec, Mode, Moto,
    Options, Pki, Registry, Workdir, MOTO_ACCESS_KEY, MOTO_REGION,
};

/// The functions' environment: inline rules and auth, as the template sets them.
fn function_env(rules: &str, registries: &[&Registry]) -> MapEnv {
    let auth: String = registries
        .iter()
        .map(|r| format!("{}: {{insecure: true}}\n", r.host()))
        .collect();
    MapEnv::new([
        ("FERRY_IMAGES", rules),
        ("FERRY_AUTH", &auth),
        ("FERRY_RETRY_BASE_MS", "5"),
    ])
}

/// An SQS event as Lambda delivers it, one record per delivery, built from the fixture.
pub(crate) fn sqs_event(deliveries: &[(String, String)]) -> SqsEvent {
    let mut event = fixture("sqs-event.json");
    let template = event["Records"][0].clone();
    let records: Vec<Value> = deliveries
        .iter()
        .map(|(id, body)| {
            let mut record = template.clone();
            record["messageId"] = Value::from(id.as_str());
            record["body"] = Value::from(body.as_str());
            record
        })
        .collect();
    event["Records"] = Value::from(records);
    serde_json::from_value(event).unwrap()
}

fn ids_and_bodies(deliveries: &[Delivery]) -> Vec<(String, String)> {
    deliveries
        .iter()
        .map(|d| (d.message_id.clone(), d.body.clone()))
        .collect()
}

/// A deadline a minute away, in the Lambda context's epoch milliseconds.
fn deadline_in_a_minute() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (now + Duration::from_secs(60)).as_millis() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn planner_enqueues_what_is_stale_and_copiers_copy_it() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    let v1 = ImageSpec::with_layers(201, 1, 2048);
    src.seed_image("team/app", "v1", &v1).await;
    src.seed_image("team/app", "v2", &ImageSpec::with_layers(202, 2, 4096))
        .await;
    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    src.seed_index("team/app", "v3", &platforms, true).await;
    dst.seed_image("mirror/app", "v1", &v1).await;

    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = Arc::new(moto.queue(&url));
    let env = function_env(
        &format!("{}/team/app: {}/mirror/app", src.host(), dst.host()),
        &[&src, &dst],
    );
    let planner = Planner::from_env(Arc::new(env.clone()), queue.clone())
        .await
        .unwrap();
    src.clear_requests();
    let summary = planner
        .handle(&fixture("schedule-event.json"))
        .await
        .unwrap();
    assert_eq!(summary.tags_seen, 3, "{summary:?}");
    assert_eq!(summary.already_in_sync, 1, "{summary:?}");
    assert_eq!(summary.jobs_enqueued, 2, "{summary:?}");
    assert!(summary.errors.is_empty(), "{summary:?}");
    // Listed tags are HEADed at the source only when their target has a manifest to
    // compare with: v1's. v2 and v3 are missing at the target, so they go unasked.
    assert_eq!(src.count("HEAD", "/manifests/"), 1, "{:?}", src.requests());

    let deliveries = receive_at_least(queue.as_ref(), 2).await;
    let jobs: Vec<Job> = deliveries
        .iter()
        .map(|d| Job::parse(&d.body).unwrap())
        .collect();
    assert!(jobs.iter().all(|j| j.digest.is_none()), "{jobs:?}");
    let mut sources: Vec<String> = jobs.into_iter().map(|j| j.source).collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            format!("{}/team/app:v2", src.host()),
            format!("{}/team/app:v3", src.host())
        ]
    );
    for d in &deliveries {
        assert!(!d.body.contains("insecure") && !d.body.contains("password"));
    }

    let copier = CopierFunction::from_env(Arc::new(env.clone()))
        .await
        .unwrap();
    let event = sqs_event(&ids_and_bodies(&deliveries));
    let response = copier
        .handle(event.clone(), Some(deadline_in_a_minute()))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    for tag in ["v2", "v3"] {
        assert_same_raw(
            &src,
            &format!("team/app:{tag}"),
            &dst,
            &format!("mirror/app:{tag}"),
        );
    }

    // SQS delivers at least once: the same batch again changes nothing.
    dst.clear_requests();
    let response = copier.handle(event, Some(deadline_in_a_minute())).await;
    assert!(response.batch_item_failures.is_empty());
    let requests = dst.requests();
    assert_eq!(dst.count("PUT", "/"), 0, "{requests:?}");
    assert_eq!(dst.count("POST", "/"), 0, "{requests:?}");

    // Everything in sync now: the next scheduled run enqueues nothing; forcing enqueues all.
    let summary = planner.handle(&serde_json::json!({})).await.unwrap();
    assert_eq!(
        (summary.already_in_sync, summary.jobs_enqueued),
        (3, 0),
        "{summary:?}"
    );
    let summary = planner
        .handle(&serde_json::json!({"force": true}))
        .await
        .unwrap();
    assert_eq!(summary.jobs_enqueued, 3, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_rules_in_the_invocation_override_the_configured_ones() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(211, 1, 512))
        .await;
    src.seed_image("team/other", "v1", &ImageSpec::with_layers(212, 1, 512))
        .await;
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = Arc::new(moto.queue(&url));
    let env = function_env(
        &format!("{}/team/app: {}/mirror/app", src.host(), dst.host()),
        &[&src, &dst],
    );
    // Off unless the stack enables it (issue 12, row 5).
    let mut env = env;
    env.0
        .insert("FERRY_ALLOW_INLINE_RULES".into(), "true".into());
    let planner = Planner::from_env(Arc::new(env), queue.clone())
        .await
        .unwrap();
    let rules = format!("{}/team/other:v1: {}/mirror/other", src.host(), dst.host());
    let summary = planner
        .handle(&serde_json::json!({ "images": rules }))
        .await
        .unwrap();
    assert_eq!(summary.jobs_enqueued, 1, "{summary:?}");
    let deliveries = receive_at_least(queue.as_ref(), 1).await;
    assert!(deliveries[0].body.contains("team/other:v1"));
    // A bad override is refused with the field named, and nothing is sent.
    let error = planner
        .handle(&serde_json::json!({ "images": "just-a-string" }))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("invocation \"images\""),
        "{error:#}"
    );
    let error = planner
        .handle(&serde_json::json!({ "force": "yes" }))
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("force"), "{error:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_jobs_are_reported_alone_and_end_in_the_dead_letter_queue() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(221, 1, 1024))
        .await;
    let moto = Moto::start();
    let (url, dlq) = moto.create_queue("ferry-jobs", Some(2)).await;
    let dlq = dlq.unwrap();
    moto.set_visibility_timeout(&url, 1).await;
    let queue = moto.queue(&url);
    let job = |tag: &str| {
        format!(
            r#"{{"v":1,"plan_id":"t","source":"{}/team/app:{tag}","targets":["{}/mirror/app:{tag}"]}}"#,
            src.host(),
            dst.host()
        )
    };
    let jobs: Vec<Job> = ["v1", "missing"]
        .iter()
        .map(|t| Job::parse(&job(t)).unwrap())
        .collect();
    queue.send(&jobs).await.unwrap();
    // The copier runs only jobs its rules select (issue 12, row 5): these do.
    let rules = format!("{}/team/app: {}/mirror/app", src.host(), dst.host());
    let env = function_env(&rules, &[&src, &dst]);
    let copier = CopierFunction::from_env(Arc::new(env.clone()))
        .await
        .unwrap();

    let deliveries = receive_at_least(&queue, 2).await;
    let mut records = ids_and_bodies(&deliveries);
    // A malformed message fails too, and never panics the function.
    records.push(("garbage-id".into(), "{not json".into()));
    let response = copier
        .handle(sqs_event(&records), Some(deadline_in_a_minute()))
        .await;
    let missing_id = deliveries
        .iter()
        .find(|d| d.body.contains(":missing"))
        .unwrap()
        .message_id
        .clone();
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    let mut expected = vec![missing_id, "garbage-id".to_string()];
    expected.sort();
    assert_eq!(failed, expected);
    // What Lambda does with the answer: delete the rest, leave the failures.
    for d in &deliveries {
        if !failed.contains(&d.message_id) {
            queue.delete(&d.receipt).await.unwrap();
        }
    }
    assert!(dst.fetch_manifest("mirror/app", "v1").await.is_some());

    // Redelivered and failed once more, the job moves to the dead-letter queue.
    let deadline = Instant::now() + LOOP_LIMIT;
    let mut receives = 1;
    while moto.message_count(&dlq).await == 0 {
        assert!(Instant::now() < deadline, "never reached the DLQ");
        let again = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if !again.is_empty() {
            receives += 1;
            let response = copier
                .handle(sqs_event(&ids_and_bodies(&again)), None)
                .await;
            assert_eq!(response.batch_item_failures.len(), again.len());
        }
    }
    assert_eq!(receives, 2, "maxReceiveCount is 2");
    assert_eq!(moto.message_count(&url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ferry_plan_enqueues_and_ferry_worker_drains() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    for i in 0..3 {
        src.seed_image(
            "team/app",
            &format!("v{i}"),
            &ImageSpec::with_layers(230 + i * 2, 2, 2048),
        )
        .await;
    }
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let work = Workdir::trusting(&[&src, &dst]);
    let images = work.images(format!(
        "{}/team/app: {}/mirror/app\n",
        src.host(),
        dst.host()
    ));
    let endpoint = moto.endpoint();
    let aws = [
        ("AWS_ENDPOINT_URL_SQS", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY),
        ("AWS_REGION", MOTO_REGION),
        support::FAST_RETRIES,
    ];
    let out = run_ferry(
        &[
            "plan".to_string(),
            format!("--images={}", images.display()),
            format!("--auth={}", work.auth().display()),
            format!("--queue-url={url}"),
        ],
        &aws,
    );
    out.assert_success();
    let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(summary["jobs_enqueued"], 3, "{out}");
    assert_eq!(moto.message_count(&url).await, 3);

    let out = run_ferry(
        &[
            "worker".to_string(),
            format!("--queue-url={url}"),
            format!("--auth={}", work.auth().display()),
            "--wait=1".into(),
            "--exit-when-empty".into(),
        ],
        &aws,
    );
    out.assert_success();
    assert!(out.stderr.contains("3 jobs succeeded, 0 failed"), "{out}");
    assert_eq!(moto.message_count(&url).await, 0);
    for i in 0..3 {
        assert_same_raw(
            &src,
            &format!("team/app:v{i}"),
            &dst,
            &format!("mirror/app:v{i}"),
        );
    }
}

/// Once through the real Lambda Runtime API (the `cargo lambda watch` emulator): the planner
/// invoked with the schedule fixture enqueues into moto, and the copier invoked with the
/// resulting SQS event copies the image. The target is ECR-marked (a TLS registry holding
/// the user and password moto's ECR API gives), with no credential configured for it: the
/// functions ask ECR through the environment's AWS credentials, as in a Lambda, and the
/// copier creates the repository.
#[tokio::test(flavor = "multi_thread")]
async fn planner_and_copier_under_the_lambda_runtime_emulator() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start_with(
        Mode::BasicTls,
        Options {
            basic_credentials: Some(("AWS", "123456789012-auth-token")),
            ..Options::default()
        },
    );
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(241, 2, 4096))
        .await;
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = moto.queue(&url);
    let dir = temp_dir();
    let images = format!(
        "{{\"{}/team/app\": \"{}/mirror/app\"}}",
        src.host(),
        dst.host()
    );
    let auth = format!(
        "{{\"{}\": {{\"insecure\": true}}, \"{}\": {{\"ecr\": {{\"region\": \"{MOTO_REGION}\"}}, \"ca\": {:?}}}}}",
        src.host(),
        dst.host(),
        Pki::get().ca_cert.display().to_string()
    );
    let endpoint = moto.endpoint();
    let emulator = support::LambdaEmulator::start(
        &[
            ("FERRY_QUEUE_URL", &url),
            ("FERRY_IMAGES", &images),
            ("FERRY_AUTH", &auth),
            ("AWS_ENDPOINT_URL_SQS", &endpoint),
            ("AWS_ENDPOINT_URL_ECR", &endpoint),
            ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", MOTO_ACCESS_KEY),
            ("AWS_REGION", MOTO_REGION),
        ],
        dir.path(),
    );
    let schedule = workspace_root().join("tests/fixtures/schedule-event.json");
    let summary = emulator.invoke("planner", &schedule);
    assert_eq!(summary["jobs_enqueued"], 1, "{summary}");

    let deliveries = receive_at_least(&queue, 1).await;
    let event = serde_json::to_vec(&sqs_event(&ids_and_bodies(&deliveries))).unwrap();
    let event_file = write_file(dir.path(), "sqs.json", event);
    let response = emulator.invoke("copier", &event_file);
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": []}),
        "{:?}",
        emulator.logs()
    );
    assert_same_raw(&src, "team/app:v1", &dst, "mirror/app:v1");
    let created = aws_sdk_ecr::Client::new(&moto.sdk_config())
        .describe_repositories()
        .send()
        .await
        .unwrap();
    let names: Vec<_> = created
        .repositories()
        .iter()
        .filter_map(|r| r.repository_name())
        .collect();
    assert_eq!(names, ["mirror/app"]);
    // Each function's outcome is one line of CloudWatch Embedded Metric Format on stdout.
    let logs = emulator.logs();
    let emf = |function: &str, metric: &str| -> Value {
        logs.iter()
            .filter_map(|line| line.find("{\"_aws\"").map(|at| &line[at..]))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .find(|line| line["Function"] == function)
            .unwrap_or_else(|| panic!("no EMF line of the {function}: {logs:#?}"))[metric]
            .clone()
    };
    assert_eq!(emf("planner", "JobsEnqueued"), 1);
    assert_eq!(emf("copier", "ImagesCopied"), 1);
    assert!(emf("copier", "BytesCopied").as_u64().unwrap() > 0);
}
