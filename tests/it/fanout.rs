//! Planning fan-out (issue 18, parts 3 and 4) against real parts: registries are
//! docker-registry, SQS is moto, and the planner and copier run under the Lambda Runtime API
//! emulator once. A fanned-out plan must give exactly the copy jobs a single plan gives, the
//! copies must be byte-exact, and plan jobs off the queue are hostile input: validated,
//! refused outside the stack's rules, retried and dead-lettered like copy jobs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{fixture, LOOP_LIMIT};
use aws_lambda_events::event::sqs::SqsEvent;
use copier::CopierFunction;
use ferry::env::MapEnv;
use ferry::job::QueuedJob;
use ferry::queue::{DeadBody, MemoryQueue, Queue};
use planner::Planner;
use serde_json::Value;
use support::{
    assert_same_raw, run_ferry, temp_dir, write_file, ImageSpec, Mode, Moto, Registry, Workdir,
    MOTO_ACCESS_KEY, MOTO_REGION,
};

/// Repositories seeded, tags in each.
const REPOS: usize = 10;
const TAGS: usize = 25;
/// `FERRY_FAN_OUT`: images per plan job, small so several hundred rules make many.
const FAN_OUT: &str = "20";

fn tag(i: usize) -> String {
    format!("t{i:02}")
}

/// An SQS event as Lambda delivers it, one record per `(id, body)`.
fn sqs_event(records: &[(String, String)]) -> SqsEvent {
    let mut event = fixture("sqs-event.json");
    let template = event["Records"][0].clone();
    event["Records"] = Value::from(
        records
            .iter()
            .map(|(id, body)| {
                let mut record = template.clone();
                record["messageId"] = Value::from(id.as_str());
                record["body"] = Value::from(body.as_str());
                record
            })
            .collect::<Vec<_>>(),
    );
    serde_json::from_value(event).unwrap()
}

fn auth(registries: &[&Registry]) -> String {
    registries
        .iter()
        .map(|r| format!("{}: {{insecure: true}}\n", r.host()))
        .collect()
}

/// A copy job as compared: its source and its sorted targets.
type Copy = (String, Vec<String>);

fn copy_of(body: &str) -> Option<Copy> {
    match QueuedJob::parse(body).unwrap() {
        QueuedJob::Copy(job) => {
            let mut targets = job.targets;
            targets.sort();
            Some((job.source, targets))
        }
        QueuedJob::Plan(_) => None,
    }
}

/// Several hundred rules over the seeded repositories: a rule per tag for most, a repository
/// listed whole (more tags than a plan job holds, so its listing is cut again) with a named
/// rule renaming one of its tags, a regex with named tags going to a second target too, and
/// a digest.
fn rules_yaml(src: &Registry, dst: &Registry, digest: &str) -> String {
    let (s, d) = (src.host(), dst.host());
    let mut yaml = String::new();
    for repo in 0..REPOS - 2 {
        for t in 0..TAGS {
            yaml += &format!("'{s}/team/r{repo}:{}': '{d}/mirror/r{repo}'\n", tag(t));
        }
    }
    let listed = REPOS - 2;
    yaml += &format!("'{s}/team/r{listed}': '{d}/mirror/r{listed}'\n");
    yaml += &format!("'{s}/team/r{listed}:t01': '{d}/renamed/r{listed}:one'\n");
    let regex = REPOS - 1;
    yaml += &format!("'{s}/team/r{regex}:/^t1/': '{d}/mirror/r{regex}'\n");
    yaml += &format!("'{s}/team/r{regex}:t12,t20': ['{d}/mirror/r{regex}', '{d}/also/r{regex}']\n");
    yaml += &format!("'{s}/team/r0@{digest}': '{d}/pinned/r0'\n");
    yaml
}

/// Issue 18's test: fan-out of several hundred rules gives exactly the copy jobs a single
/// plan gives (no duplicates, none missing), copied byte-exact; redelivered plan jobs
/// enqueue nothing once the copies exist. Planner and copier run under the Runtime API
/// emulator (`cargo lambda watch`), their images and auth files in S3 (moto).
#[tokio::test(flavor = "multi_thread")]
async fn fan_out_gives_the_single_plan_s_copy_jobs_under_the_lambda_emulator() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    let tags: Vec<String> = (0..TAGS).map(tag).collect();
    let mut digests = Vec::new();
    for repo in 0..REPOS {
        let name = format!("team/r{repo}");
        let image = src
            .seed_image(
                &name,
                &tags[0],
                &ImageSpec::with_layers(300 + repo as u64, 1, 1024),
            )
            .await;
        src.tag_many(&name, &tags[1..], &image).await;
        digests.push(image.digest);
    }
    let rules = rules_yaml(&src, &dst, &digests[0]);
    let rule_count = rules.lines().count();
    assert!(rule_count > 200, "{rule_count} rules");

    // The single plan, in process, into a queue of its own: what fan-out must reproduce.
    let env = MapEnv::new([
        ("FERRY_IMAGES", rules.as_str()),
        ("FERRY_AUTH", &auth(&[&src, &dst])),
        ("FERRY_FAN_OUT", "never"),
    ]);
    let single_queue = Arc::new(MemoryQueue::default());
    let planner = Planner::from_env(Arc::new(env), single_queue.clone())
        .await
        .unwrap();
    let single = planner.handle(&serde_json::json!({})).await.unwrap();
    assert!(single.errors.is_empty(), "{single:?}");
    assert_eq!(single.plan_jobs_enqueued, 0, "{single:?}");
    let mut expected: Vec<Copy> = Vec::new();
    loop {
        let batch = single_queue.receive(10, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            expected.push(copy_of(&delivery.body).expect("a copy job"));
            single_queue.delete(&delivery.receipt).await.unwrap();
        }
    }
    assert_eq!(expected.len(), single.jobs_enqueued);
    // r0..r7 every tag, r8 every tag (one twice renamed), r9 t1x and t20, r0 by digest.
    assert_eq!(expected.len(), (REPOS - 1) * TAGS + 11 + 1, "{expected:?}");

    // The fan-out, through the emulator, on moto: the rules and the auth file in a moto
    // bucket, as a migration too large for the environment deploys them.
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = moto.queue(&url);
    let dir = temp_dir();
    moto.create_bucket("ferry-migration").await;
    let images_uri = moto
        .put_object("ferry-migration", "rules/images.yaml", rules.as_str())
        .await;
    let auth_uri = moto
        .put_object("ferry-migration", "rules/auth.yaml", auth(&[&src, &dst]))
        .await;
    let mut function_env = moto.cli_env();
    function_env.extend([
        ("FERRY_QUEUE_URL", url.clone()),
        ("FERRY_IMAGES_FILE", images_uri),
        ("FERRY_AUTH_FILE", auth_uri),
        ("FERRY_FAN_OUT", FAN_OUT.to_string()),
    ]);
    let function_env: Vec<(&str, &str)> =
        function_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let emulator = support::LambdaEmulator::start(&function_env, dir.path());
    let schedule = support::workspace_root().join("tests/fixtures/schedule-event.json");
    let summary = emulator.invoke("planner", &schedule);
    // More than FAN_OUT requests to resolve: cut before any registry request.
    assert_eq!(summary["jobs_enqueued"], 0, "{summary}");
    assert_eq!(summary["tags_seen"], 0, "{summary}");
    let planner_plan_jobs = summary["plan_jobs_enqueued"].as_u64().unwrap();
    assert!(planner_plan_jobs >= 10, "{summary}");

    // Copier invocations until the queue is empty, each given what is waiting (plan jobs
    // and copy jobs mixed), as SQS would.
    let mut copies: Vec<Copy> = Vec::new();
    let mut plan_bodies: Vec<String> = Vec::new();
    let deadline = Instant::now() + 10 * LOOP_LIMIT;
    let mut quiet = 0;
    while quiet < 2 {
        assert!(Instant::now() < deadline, "the queue never emptied");
        let mut batch = Vec::new();
        while batch.len() < 60 {
            let got = queue.receive(10, Duration::from_millis(200)).await.unwrap();
            if got.is_empty() {
                break;
            }
            batch.extend(got);
        }
        if batch.is_empty() {
            quiet += 1;
            continue;
        }
        quiet = 0;
        let records: Vec<(String, String)> = batch
            .iter()
            .map(|d| (d.message_id.clone(), d.body.clone()))
            .collect();
        for (_, body) in &records {
            match copy_of(body) {
                Some(copy) => copies.push(copy),
                None => plan_bodies.push(body.clone()),
            }
        }
        let event = serde_json::to_vec(&sqs_event(&records)).unwrap();
        let response = emulator.invoke("copier", &write_file(dir.path(), "sqs.json", event));
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": []}),
            "{:?}",
            emulator.logs()
        );
        for delivery in &batch {
            queue.delete(&delivery.receipt).await.unwrap();
        }
    }
    // The listed repository's 25 tags were cut again by the copier that listed them.
    assert!(
        plan_bodies.len() as u64 > planner_plan_jobs,
        "{} plan jobs, {planner_plan_jobs} from the planner",
        plan_bodies.len()
    );
    assert!(plan_bodies.iter().any(|b| b.contains("\"listed\":true")));

    // Exactly the single plan's copy jobs: none twice, none missing.
    let unique: BTreeSet<Copy> = copies.iter().cloned().collect();
    assert_eq!(unique.len(), copies.len(), "duplicate copy jobs");
    assert_eq!(unique, expected.iter().cloned().collect::<BTreeSet<Copy>>());

    // Copied byte-exact: every target's manifest bytes are the source's, and skopeo agrees
    // for one of each shape.
    for (source, targets) in &expected {
        let (repo, reference) = split(source, &src.host());
        let want = src.fetch_manifest(repo, reference).await.unwrap().bytes;
        for target in targets {
            let (repo, reference) = split(target, &dst.host());
            let got = dst.fetch_manifest(repo, reference).await;
            assert_eq!(got.map(|m| m.bytes), Some(want.clone()), "{target}");
        }
    }
    let (l, r) = (REPOS - 2, REPOS - 1);
    assert_same_raw(&src, "team/r3:t07", &dst, "mirror/r3:t07");
    assert_same_raw(
        &src,
        &format!("team/r{l}:t01"),
        &dst,
        &format!("renamed/r{l}:one"),
    );
    assert_same_raw(
        &src,
        &format!("team/r{r}:t20"),
        &dst,
        &format!("also/r{r}:t20"),
    );
    let pinned = format!("pinned/r0@{}", digests[0]);
    assert_same_raw(&src, &format!("team/r0@{}", digests[0]), &dst, &pinned);

    // Every plan job delivered again, once the copies exist: no copy job is enqueued. (A
    // listing too large for one job sends its slices again, as plan jobs; expanded, they
    // find every image in sync too.)
    let mut again: Vec<String> = plan_bodies.clone();
    let mut expanded = 0;
    for round in 0..3 {
        if again.is_empty() {
            break;
        }
        expanded += again.len();
        let records: Vec<(String, String)> = again
            .iter()
            .enumerate()
            .map(|(i, body)| (format!("again-{round}-{i}"), body.clone()))
            .collect();
        let event = serde_json::to_vec(&sqs_event(&records)).unwrap();
        let file = write_file(dir.path(), &format!("again-{round}.json"), event);
        let response = emulator.invoke("copier", &file);
        assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
        again.clear();
        loop {
            let got = queue.receive(10, Duration::from_millis(300)).await.unwrap();
            if got.is_empty() {
                break;
            }
            for delivery in got {
                assert_eq!(
                    copy_of(&delivery.body),
                    None,
                    "a copy job was enqueued again"
                );
                assert!(
                    delivery.body.contains("\"listed\":true"),
                    "{}",
                    delivery.body
                );
                again.push(delivery.body.clone());
                queue.delete(&delivery.receipt).await.unwrap();
            }
        }
        // Listed slices are never cut again.
        assert!(round == 0 || again.is_empty(), "{again:?}");
    }
    assert_eq!(moto.message_count(&url).await, 0);
    // The copier's EMF line for a plan job is the planner's, counting both kinds.
    let logs = emulator.logs();
    let plan_lines: Vec<Value> = logs
        .iter()
        .filter_map(|line| line.find("{\"_aws\"").map(|at| &line[at..]))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .filter(|line| line["Function"] == "copier" && line.get("PlanJobsEnqueued").is_some())
        .collect();
    assert_eq!(plan_lines.len(), plan_bodies.len() + expanded, "{logs:#?}");
}

/// `host/repo:tag` or `host/repo@digest` → `(repo, tag or digest)`.
fn split<'a>(reference: &'a str, host: &str) -> (&'a str, &'a str) {
    let rest = &reference[host.len() + 1..];
    rest.split_once('@')
        .or_else(|| rest.rsplit_once(':'))
        .unwrap()
}

/// Plan jobs are read like copy jobs: a bad body (another version, an unknown field) is
/// refused with its reason, a rule the stack does not have is refused like a copy job
/// outside the rules (`denied`, nothing listed or sent), and an allowed one is expanded.
#[tokio::test(flavor = "multi_thread")]
async fn bad_and_foreign_plan_jobs_are_refused() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    src.seed_image("team/app", "v1", &ImageSpec::with_layers(351, 1, 512))
        .await;
    src.seed_image("team/secret", "v1", &ImageSpec::with_layers(352, 1, 512))
        .await;
    let (s, d) = (src.host(), dst.host());
    let rules = format!("'{s}/team/app': '{d}/mirror/app'\n");
    let env = MapEnv::new([
        ("FERRY_IMAGES", rules.as_str()),
        ("FERRY_AUTH", &auth(&[&src, &dst])),
    ]);
    let queue = Arc::new(MemoryQueue::default());
    let copier = CopierFunction::from_env(Arc::new(env.clone()))
        .await
        .unwrap()
        .with_queue(queue.clone());
    let plan = |rules: &str, extra: &str| {
        format!(r#"{{"kind":"plan","v":1,"plan_id":"p","rules":{rules}{extra}}}"#)
    };
    let allowed = format!(r#"{{"{s}/team/app":"{d}/mirror/app"}}"#);
    let cases: Vec<(&str, String)> = vec![
        (
            "version",
            plan(&allowed, "").replace(r#""v":1"#, r#""v":2"#),
        ),
        ("unknown", plan(&allowed, r#","exclude":["v1"]"#)),
        (
            "kind",
            plan(&allowed, "").replace(r#""plan""#, r#""purge""#),
        ),
        // Another repository, another target, a different selection of the same one.
        (
            "foreign",
            plan(&format!(r#"{{"{s}/team/secret":"{d}/mirror/app"}}"#), ""),
        ),
        (
            "elsewhere",
            plan(&format!(r#"{{"{s}/team/app":"{d}/stolen/app"}}"#), ""),
        ),
        (
            "regex",
            plan(&format!(r#"{{"{s}/team/app:/v/":"{d}/mirror/app"}}"#), ""),
        ),
        (
            "variable",
            plan(&format!(r#"{{"{s}/team/app":"{d}/$FERRY_AUTH"}}"#), ""),
        ),
    ];
    let records: Vec<(String, String)> = cases
        .iter()
        .map(|(id, body)| (id.to_string(), body.clone()))
        .collect();
    src.clear_requests();
    let response = copier.handle(sqs_event(&records), None).await;
    // Failed, as a bad or foreign copy job fails: each is in the answer.
    let mut retried: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    retried.sort();
    let mut ids: Vec<&str> = cases.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(retried, ids);
    let foreign_copy =
        format!(r#"{{"v":1,"source":"{s}/team/secret:v1","targets":["{d}/mirror/app:v1"]}}"#);
    let bad_copy = r#"{"v":2,"source":"a.io/x","targets":["b.io/x"]}"#.to_string();
    let records = [("copy".into(), foreign_copy), ("bad-copy".into(), bad_copy)];
    let response = copier.handle(sqs_event(&records), None).await;
    assert_eq!(response.batch_item_failures.len(), 2);
    // Nothing was listed or HEADed at the source, nothing sent.
    assert!(src.requests().is_empty(), "{:?}", src.requests());
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());

    // The allowed one expands into the copy job.
    let response = copier
        .handle(sqs_event(&[("ok".into(), plan(&allowed, ""))]), None)
        .await;
    assert!(response.batch_item_failures.is_empty());
    let sent = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        copy_of(&sent[0].body),
        Some((
            format!("{s}/team/app:v1"),
            vec![format!("{d}/mirror/app:v1")]
        ))
    );
}

/// A plan job whose registry fails is retried, and after maxReceiveCount deliveries it is
/// in the dead-letter queue, where `ferry dlq list` shows it as a plan job.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_plan_job_retries_and_dead_letters() {
    let dst = Registry::start(Mode::Http);
    // A port nothing listens on: every listing fails to connect.
    let gone = "127.0.0.1:9";
    let rules = format!("'{gone}/team/app': '{}/mirror/app'\n", dst.host());
    let moto = Moto::start();
    let (url, dlq) = moto.create_queue("ferry-jobs", Some(2)).await;
    let dlq = dlq.unwrap();
    moto.set_visibility_timeout(&url, 1).await;
    let queue = Arc::new(moto.queue(&url));
    let env = MapEnv::new([
        ("FERRY_IMAGES", rules.as_str()),
        (
            "FERRY_AUTH",
            &format!("{gone}: {{insecure: true}}\n{}", auth(&[&dst])),
        ),
        ("FERRY_FAN_OUT", "always"),
        ("FERRY_RETRY_BASE_MS", "5"),
    ]);
    let planner = Planner::from_env(Arc::new(env.clone()), queue.clone())
        .await
        .unwrap();
    let summary = planner.handle(&serde_json::json!({})).await.unwrap();
    assert_eq!((summary.plan_jobs_enqueued, summary.jobs_enqueued), (1, 0));
    let copier = CopierFunction::from_env(Arc::new(env.clone()))
        .await
        .unwrap()
        .with_queue(queue.clone());
    let deadline = Instant::now() + LOOP_LIMIT;
    let mut receives = 0;
    while moto.message_count(&dlq).await == 0 {
        assert!(Instant::now() < deadline, "never reached the DLQ");
        let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if got.is_empty() {
            continue;
        }
        receives += 1;
        let records: Vec<(String, String)> = got
            .iter()
            .map(|d| (d.message_id.clone(), d.body.clone()))
            .collect();
        let response = copier.handle(sqs_event(&records), None).await;
        assert_eq!(
            response.batch_item_failures.len(),
            1,
            "a transport failure retries"
        );
    }
    assert_eq!(receives, 2, "maxReceiveCount is 2");
    let dead = moto.queue(&url).list_dead_jobs(10).await.unwrap();
    assert_eq!(dead.jobs.len(), 1);
    assert!(matches!(dead.jobs[0].body, DeadBody::Plan(_)), "{dead:?}");
    assert_eq!(serde_json::to_value(&dead.jobs[0]).unwrap()["kind"], "plan");
}

/// `ferry plan --queue-url --fan-out` from a machine: plan jobs, which `ferry worker`
/// expands and copies.
#[tokio::test(flavor = "multi_thread")]
async fn ferry_plan_fans_out_and_ferry_worker_expands() {
    let src = Registry::start(Mode::Http);
    let dst = Registry::start(Mode::Http);
    for i in 0..3 {
        src.seed_image(
            "team/app",
            &format!("v{i}"),
            &ImageSpec::with_layers(360 + i * 2, 1, 1024),
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
    let plan = |fan_out: &str| {
        run_ferry(
            &[
                "plan".to_string(),
                format!("--images={}", images.display()),
                format!("--auth={}", work.auth().display()),
                format!("--queue-url={url}"),
                fan_out.to_string(),
            ],
            &aws,
        )
    };
    let out = plan("--fan-out=always");
    out.assert_success();
    let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(summary["plan_jobs_enqueued"], 1, "{out}");
    assert_eq!(summary["jobs_enqueued"], 0, "{out}");
    let out = plan("--fan-out=sometimes");
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("none of auto, always, never"), "{out}");

    let out = run_ferry(
        &[
            "worker".to_string(),
            format!("--queue-url={url}"),
            format!("--auth={}", work.auth().display()),
            format!("--images={}", images.display()),
            "--wait=1".into(),
            "--exit-when-empty".into(),
        ],
        &aws,
    );
    out.assert_success();
    // One plan job expanded, three copies.
    assert!(out.stderr.contains("4 jobs succeeded, 0 failed"), "{out}");
    assert_eq!(moto.message_count(&url).await, 0);
    for i in 0..3 {
        assert_same_raw(
            &src,
            &format!("team/app:v{i}"),
            &dst,
            &format!("mirror/app:v{i}"),
        );
    }
    // In sync now: fanning out again sends a plan job, whose expansion sends nothing.
    plan("--fan-out=always").assert_success();
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
    assert!(out.stderr.contains("1 jobs succeeded, 0 failed"), "{out}");
    assert_eq!(moto.message_count(&url).await, 0);
}
