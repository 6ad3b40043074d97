//! Immutable tags (`--immutable-tags`, a rule's `immutable:`): a warm run spends no request
//! on a tag declared immutable that the target lists, counted from the real registries'
//! access logs; a tag the target lacks is still copied; a re-pushed release tag is not
//! noticed (the documented trade-off) until `--force` copies it. The planner honours them
//! too: `ferry plan --queue-url` against moto's SQS, and the planner function (with plan
//! jobs expanded by the copier function) called directly.

use std::sync::Arc;
use std::time::Duration;

use copier::CopierFunction;
use ferry::env::MapEnv;
use ferry::job::{Job, QueuedJob};
use ferry::queue::{MemoryQueue, Queue};
use planner::Planner;
use serde_json::Value;
use support::{auth_yaml, run_ferry, ImageSpec, Mode, Moto, Pair, Registry};

/// Manifest requests (HEAD or GET) a registry answered for `repo`'s `tag`.
fn manifest_requests(registry: &support::Registry, repo: &str, tag: &str) -> usize {
    registry.count("*", &format!("/v2/{repo}/manifests/{tag}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_run_asks_nothing_about_immutable_tags_on_the_target() {
    let p = Pair::start(Mode::Http, Mode::BasicHttp);
    let (src, dst) = (&p.src, &p.dst);
    for (seed, tag) in [(1, "v1.0.0"), (2, "v1.1.0"), (3, "v2.0.0"), (4, "latest")] {
        src.seed_image("rel/app", tag, &ImageSpec::with_layers(700 + seed, 1, 1024))
            .await;
    }
    let images = p.rule("rel/app", "mirror/app");
    let flag = ["--immutable-tags=/^v\\d/"];
    p.sync(&images, &flag).assert_success();
    for tag in ["v1.0.0", "v1.1.0", "v2.0.0", "latest"] {
        p.assert_copied(&format!("rel/app:{tag}"), &format!("mirror/app:{tag}"));
    }

    // Warm: one listing per repository on each side; only `latest` is HEADed.
    src.clear_requests();
    dst.clear_requests();
    let (out, report) = p.sync_reporting(&images, &flag);
    out.assert_success();
    assert_eq!(report["totals"]["skipped"], 4, "{report}");
    for tag in ["v1.0.0", "v1.1.0", "v2.0.0"] {
        assert_eq!(
            manifest_requests(src, "rel/app", tag),
            0,
            "{:?}",
            src.requests()
        );
        assert_eq!(
            manifest_requests(dst, "mirror/app", tag),
            0,
            "{:?}",
            dst.requests()
        );
    }
    assert_eq!(manifest_requests(src, "rel/app", "latest"), 1);
    assert_eq!(manifest_requests(dst, "mirror/app", "latest"), 1);
    assert_eq!(
        dst.count("GET", "/v2/mirror/app/tags/list"),
        1,
        "{:?}",
        dst.requests()
    );
    assert_eq!(dst.count("PUT", "/"), 0);

    // The same from the rule's long form, without the flag.
    let long_form = p.work.write(
        "long.yaml",
        format!(
            "{}:\n  to: {}\n  immutable: ^v\\d\n",
            src.image("rel/app"),
            dst.image("mirror/app")
        ),
    );
    src.clear_requests();
    dst.clear_requests();
    p.sync(&long_form, &[]).assert_success();
    assert_eq!(
        manifest_requests(src, "rel/app", "v1.0.0"),
        0,
        "{:?}",
        src.requests()
    );
    assert_eq!(
        manifest_requests(dst, "mirror/app", "v2.0.0"),
        0,
        "{:?}",
        dst.requests()
    );
    assert_eq!(manifest_requests(dst, "mirror/app", "latest"), 1);

    // A tag the target lacks is copied as usual.
    let v2 = dst.fetch_manifest("mirror/app", "v2.0.0").await.unwrap();
    dst.delete_manifest("mirror/app", &v2.digest).await;
    p.sync(&images, &flag).assert_success();
    p.assert_copied("rel/app:v2.0.0", "mirror/app:v2.0.0");

    // A release tag pushed again at the source is not noticed (the trade-off) ...
    let moved = src
        .seed_image("rel/app", "v1.0.0", &ImageSpec::with_layers(799, 1, 1024))
        .await;
    p.sync(&images, &flag).assert_success();
    let kept = dst.fetch_manifest("mirror/app", "v1.0.0").await.unwrap();
    assert_ne!(kept.digest, moved.digest);
    // ... until --force copies it.
    dst.clear_requests();
    p.sync(&images, &["--immutable-tags=^v\\d", "--force"])
        .assert_success();
    p.assert_copied("rel/app:v1.0.0", "mirror/app:v1.0.0");
    assert!(dst.count("PUT", "/v2/mirror/app/manifests/v1.0.0") >= 1);
}

/// Release tags of two source repositories, copied: `rel/app` listed whole into two target
/// repositories, `rel/lib` by named tags into one (the planner HEADs named sources while
/// resolving, so both paths are covered).
async fn mirrored_releases() -> Pair {
    let p = Pair::start(Mode::Http, Mode::BasicHttp);
    for (seed, repo, tag) in [
        (1, "rel/app", "v1.0.0"),
        (2, "rel/app", "v1.1.0"),
        (3, "rel/app", "v2.0.0"),
        (4, "rel/lib", "v1.0.0"),
        (5, "rel/lib", "v1.1.0"),
    ] {
        p.src
            .seed_image(repo, tag, &ImageSpec::with_layers(740 + seed, 1, 1024))
            .await;
    }
    p.sync(&release_rules(&p, ""), &[]).assert_success();
    p
}

/// The rules of [`mirrored_releases`]; `extra` is added to each rule's long form.
fn release_rules(p: &Pair, extra: &str) -> std::path::PathBuf {
    p.work
        .write("releases.yaml", release_yaml(&p.src, &p.dst, extra))
}

fn release_yaml(src: &Registry, dst: &Registry, extra: &str) -> String {
    format!(
        "{}:\n  to: [{}, {}]\n{extra}{}:\n  to: {}\n{extra}",
        src.image("rel/app"),
        dst.image("mirror/app"),
        dst.image("copy/app"),
        src.image("rel/lib:v1.0.0,v1.1.0"),
        dst.image("mirror/lib"),
    )
}

/// What a warm planner run with every tag immutable and on its targets asked: no manifest
/// request on either side, one `tags/list` per target repository (and the source listing
/// of the rule that lists tags), nothing else.
#[track_caller]
fn assert_asked_only_listings(p: &Pair) {
    let (src, dst) = (&p.src, &p.dst);
    assert_eq!(src.count("*", "/manifests/"), 0, "{:?}", src.requests());
    assert_eq!(dst.count("*", "/manifests/"), 0, "{:?}", dst.requests());
    for repo in ["mirror/app", "copy/app", "mirror/lib"] {
        let listing = format!("/v2/{repo}/tags/list");
        assert_eq!(
            dst.count("GET", &listing),
            1,
            "{repo}: {:?}",
            dst.requests()
        );
    }
    assert_eq!(repository_requests(dst), 3, "{:?}", dst.requests());
    assert_eq!(src.count("GET", "/v2/rel/app/tags/list"), 1);
    assert_eq!(repository_requests(src), 1, "{:?}", src.requests());
}

/// Requests about a repository: all but the `/v2/` ping that learns the auth challenge.
fn repository_requests(registry: &Registry) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.path != "/v2/")
        .count()
}

/// Every message on `queue` (deleted), as jobs: `(source, sorted targets)`, sorted.
async fn drain(queue: &dyn Queue) -> Vec<(String, Vec<String>)> {
    let mut jobs = Vec::new();
    for _ in 0..50 {
        let got = queue.receive(10, Duration::from_millis(300)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for delivery in got {
            let job = Job::parse(&delivery.body).unwrap();
            let mut targets = job.targets;
            targets.sort();
            jobs.push((job.source, targets));
            queue.delete(&delivery.receipt).await.unwrap();
        }
    }
    jobs.sort();
    jobs
}

/// `ferry plan --queue-url` with every tag immutable and on its targets: nothing enqueued,
/// no manifest request; a tag a target lacks is enqueued for that target alone; `--force`
/// enqueues every image.
#[tokio::test(flavor = "multi_thread")]
async fn ferry_plan_sends_nothing_for_immutable_tags_the_targets_list() {
    let p = mirrored_releases().await;
    let (src, dst) = (&p.src, &p.dst);
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = moto.queue(&url);
    let envs = moto.cli_env();
    let mut envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.push(support::FAST_RETRIES);
    let images = release_rules(&p, "");
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "plan".to_string(),
            format!("--images={}", images.display()),
            format!("--auth={}", p.work.auth().display()),
            format!("--queue-url={url}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run_ferry(&args, &envs);
        out.assert_success();
        let summary: Value = serde_json::from_str(out.stdout.trim()).unwrap();
        summary
    };

    src.clear_requests();
    dst.clear_requests();
    let summary = plan(&["--immutable-tags=/^v\\d/"]);
    assert_eq!(summary["tags_seen"], 5, "{summary}");
    assert_eq!(summary["already_in_sync"], 5, "{summary}");
    assert_eq!(summary["jobs_enqueued"], 0, "{summary}");
    assert_asked_only_listings(&p);
    assert_eq!(moto.message_count(&url).await, 0);

    // Tags a target lacks: enqueued for that target only.
    for (repo, tag) in [("copy/app", "v2.0.0"), ("mirror/lib", "v1.1.0")] {
        let manifest = dst.fetch_manifest(repo, tag).await.unwrap();
        dst.delete_manifest(repo, &manifest.digest).await;
    }
    let summary = plan(&["--immutable-tags=^v\\d"]);
    assert_eq!(summary["jobs_enqueued"], 2, "{summary}");
    assert_eq!(summary["already_in_sync"], 3, "{summary}");
    assert_eq!(
        drain(&queue).await,
        [
            (
                src.image("rel/app:v2.0.0"),
                vec![dst.image("copy/app:v2.0.0")]
            ),
            (
                src.image("rel/lib:v1.1.0"),
                vec![dst.image("mirror/lib:v1.1.0")]
            ),
        ]
    );

    // --force: every image, every target.
    let summary = plan(&["--immutable-tags=^v\\d", "--force"]);
    assert_eq!(summary["jobs_enqueued"], 5, "{summary}");
    let jobs = drain(&queue).await;
    assert_eq!(jobs.len(), 5, "{jobs:?}");
    assert!(jobs
        .iter()
        .filter(|(source, _)| source.contains("rel/app"))
        .all(|(_, targets)| targets.len() == 2));
    assert_eq!(moto.message_count(&url).await, 0);
}

/// The planner function, called directly: `FERRY_IMMUTABLE_TAGS` or a rule's `immutable:`
/// spares every request about tags its targets list, also when it fans out into plan jobs
/// that the copier function expands; `{"force": true}` enqueues everything; a bad pattern
/// stops the cold start.
#[tokio::test(flavor = "multi_thread")]
async fn the_planner_function_spares_immutable_tags_and_so_do_plan_jobs() {
    let p = mirrored_releases().await;
    let (src, dst) = (&p.src, &p.dst);
    let auth = auth_yaml(&[src, dst]);
    let env = |rules: &str, extra: &[(&str, &str)]| {
        let mut vars = vec![
            ("FERRY_IMAGES", rules.to_string()),
            ("FERRY_AUTH", auth.clone()),
            ("FERRY_RETRY_BASE_MS", "5".to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        MapEnv(vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    };
    let plain = release_yaml(src, dst, "");
    let long_form = release_yaml(src, dst, "  immutable: /^v\\d/\n");
    for (rules, extra) in [
        (
            &plain,
            vec![
                ("FERRY_IMMUTABLE_TAGS", "^v\\d"),
                ("FERRY_FAN_OUT", "never"),
            ],
        ),
        (&long_form, vec![("FERRY_FAN_OUT", "never")]),
    ] {
        let queue = Arc::new(MemoryQueue::default());
        let planner = Planner::from_env(Arc::new(env(rules, &extra)), queue.clone())
            .await
            .unwrap();
        src.clear_requests();
        dst.clear_requests();
        let summary = planner.handle(&serde_json::json!({})).await.unwrap();
        assert_eq!(
            (summary.already_in_sync, summary.jobs_enqueued),
            (5, 0),
            "{summary:?}"
        );
        assert!(summary.errors.is_empty(), "{summary:?}");
        assert_asked_only_listings(&p);
        let forced = planner
            .handle(&serde_json::json!({"force": true}))
            .await
            .unwrap();
        assert_eq!(forced.jobs_enqueued, 5, "{forced:?}");
    }

    // Fanned out (a plan job per image, listed ones included): the copier expanding them
    // asks no more, whether the pattern is the functions' or the rule's.
    for (rules, extra) in [
        (
            &plain,
            vec![("FERRY_IMMUTABLE_TAGS", "^v\\d"), ("FERRY_FAN_OUT", "1")],
        ),
        (&long_form, vec![("FERRY_FAN_OUT", "1")]),
    ] {
        let env = Arc::new(env(rules, &extra));
        let queue = Arc::new(MemoryQueue::default());
        let planner = Planner::from_env(env.clone(), queue.clone()).await.unwrap();
        let summary = planner.handle(&serde_json::json!({})).await.unwrap();
        assert_eq!(summary.jobs_enqueued, 0, "{summary:?}");
        let copier = CopierFunction::from_env(env)
            .await
            .unwrap()
            .with_queue(queue.clone());
        src.clear_requests();
        dst.clear_requests();
        let mut expanded = 0;
        for _ in 0..50 {
            let got = queue.receive(10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                break;
            }
            let records: Vec<(String, String)> = got
                .iter()
                .map(|d| (d.message_id.clone(), d.body.clone()))
                .collect();
            for (_, body) in &records {
                assert!(
                    matches!(QueuedJob::parse(body), Ok(QueuedJob::Plan(_))),
                    "a copy job was enqueued: {body}"
                );
            }
            expanded += records.len();
            let response = copier
                .handle(crate::serverless::sqs_event(&records), None)
                .await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
            for delivery in got {
                queue.delete(&delivery.receipt).await.unwrap();
            }
        }
        // The listing's plan job came back as one listed plan job per tag: 3 + 3.
        assert_eq!(
            (summary.plan_jobs_enqueued, expanded),
            (3, 6),
            "{summary:?}"
        );
        assert_eq!(src.count("*", "/manifests/"), 0, "{:?}", src.requests());
        assert_eq!(dst.count("*", "/manifests/"), 0, "{:?}", dst.requests());
    }

    let bad = env(&plain, &[("FERRY_IMMUTABLE_TAGS", "/(/")]);
    let error = Planner::from_env(Arc::new(bad), Arc::new(MemoryQueue::default()))
        .await
        .err()
        .expect("a bad pattern is refused")
        .to_string();
    assert!(error.contains("FERRY_IMMUTABLE_TAGS"), "{error}");
}
