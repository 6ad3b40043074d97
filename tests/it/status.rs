//! Watching a migration: `ferry status`, `ferry dlq list` and `ferry dlq redrive` as
//! processes against a real SQS API (moto), on a queue whose redrive policy moves a job to
//! its dead-letter queue after one receive, and on a queue without one. Jobs die the way
//! they do in production (received and never deleted), built by ferry's own job types.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::{receive_at_least, LOOP_LIMIT};
use ferry::job::{new_plan_id, Job};
use ferry::queue::Queue;
use serde_json::Value;
use support::{run_ferry, Moto, Output};

/// `ferry status`'s exit statuses besides 0.
const RUNNING: i32 = 3;
const DEAD_JOBS: i32 = 4;

/// `n` valid copy jobs, every other one with the digest the planner saw.
fn jobs(n: usize) -> Vec<Job> {
    let plan_id = new_plan_id();
    (0..n)
        .map(|i| {
            let digest = if i % 2 == 0 {
                format!(r#","digest":"sha256:{i:064x}""#)
            } else {
                String::new()
            };
            Job::parse(&format!(
                r#"{{"v":1,"plan_id":"{plan_id}","source":"quay.io/team/app:v{i}"{digest},"targets":["127.0.0.1:5000/mirror/app:v{i}","127.0.0.1:5001/mirror/app:v{i}"]}}"#
            ))
            .unwrap()
        })
        .collect()
}

fn ferry(moto: &Moto, args: &[&str]) -> Output {
    let env = moto.cli_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_ferry(args, &env)
}

/// `ferry status --json`, checked to exit with `code`.
fn status_json(moto: &Moto, url: &str, code: i32) -> Value {
    let out = ferry(moto, &["status", "--queue-url", url, "--json"]);
    out.assert_code(code);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{out}"))
}

/// Makes every job on the queue dead: each is received once and abandoned, and with
/// `maxReceiveCount` 1 the next receive moves it to the dead-letter queue.
async fn kill_all(moto: &Moto, url: &str, dlq: &str, n: usize) {
    let queue = moto.queue(url);
    for delivery in receive_at_least(&queue, n).await {
        queue
            .extend_visibility(&delivery.receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + LOOP_LIMIT;
    while moto.message_count(dlq).await < n {
        assert!(Instant::now() < deadline, "jobs never reached the DLQ");
        let delivered = queue.receive(10, Duration::from_millis(200)).await.unwrap();
        assert!(
            delivered.is_empty(),
            "a job was delivered past maxReceiveCount"
        );
    }
    assert_eq!(moto.message_count(url).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_the_queue_and_exits_0_only_when_all_is_empty() {
    let moto = Moto::start();
    let (url, dlq) = moto.create_queue("ferry-jobs", Some(1)).await;
    let dlq = dlq.unwrap();

    let empty = status_json(&moto, &url, 0);
    assert_eq!(empty["progress"], "done");
    assert_eq!(empty["queue"]["url"], url.as_str());
    assert_eq!(
        empty["dead_letter_queue"]["url"],
        dlq.as_str(),
        "found from the redrive policy"
    );
    assert_eq!(empty["dead_letter_queue"]["max_receive_count"], 1);
    let text = ferry(&moto, &["status", "--queue-url", &url]);
    text.assert_success();
    assert!(
        text.stdout
            .contains("done: the queue and its dead-letter queue are empty"),
        "{text}"
    );

    let queue = moto.queue(&url);
    queue.send(&jobs(3)).await.unwrap();
    let waiting = status_json(&moto, &url, RUNNING);
    assert_eq!(waiting["progress"], "running");
    assert_eq!(
        waiting["queue"]["jobs"],
        serde_json::json!({"waiting": 3, "in_flight": 0, "delayed": 0})
    );
    assert_eq!(waiting["dead_letter_queue"]["jobs"]["waiting"], 0);

    // One received and not yet deleted: in flight, and still not done.
    let running = queue.receive(1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(running.len(), 1);
    let in_flight = status_json(&moto, &url, RUNNING);
    assert_eq!(
        in_flight["queue"]["jobs"],
        serde_json::json!({"waiting": 2, "in_flight": 1, "delayed": 0})
    );
    let text = ferry(&moto, &["status", "--queue-url", &url]);
    text.assert_code(RUNNING);
    assert!(
        text.stdout.contains("waiting 2, in flight 1, delayed 0"),
        "{text}"
    );
    assert!(
        text.stdout.contains("running: 3 jobs on the queue"),
        "{text}"
    );

    // Done with the queue, but one job died: exit 4, not 0.
    queue.delete(&running[0].receipt).await.unwrap();
    kill_all(&moto, &url, &dlq, 2).await;
    let dead = status_json(&moto, &url, DEAD_JOBS);
    assert_eq!(dead["progress"], "dead_jobs");
    assert_eq!(dead["queue"]["jobs"]["waiting"], 0);
    assert_eq!(dead["dead_letter_queue"]["jobs"]["waiting"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_jobs_are_listed_without_being_consumed_then_redriven_once_each() {
    let moto = Moto::start();
    let (url, dlq) = moto.create_queue("ferry-jobs", Some(1)).await;
    let dlq = dlq.unwrap();
    let sent = jobs(12);
    moto.queue(&url).send(&sent).await.unwrap();
    kill_all(&moto, &url, &dlq, sent.len()).await;
    // Something that is not a job dies too (sent to the DLQ as it is, escape codes and all).
    moto.client()
        .send_message()
        .queue_url(&dlq)
        .message_body("\u{1b}[2J{not a job")
        .send()
        .await
        .unwrap();
    let total = sent.len() + 1;

    let out = ferry(&moto, &["dlq", "list", "--queue-url", &url, "--json"]);
    out.assert_success();
    let listed: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(listed["dead_letter_queue"], dlq.as_str());
    assert_eq!(listed["complete"], true, "{out}");
    let dead = listed["jobs"].as_array().unwrap();
    assert_eq!(dead.len(), total, "{out}");
    let ids: BTreeSet<&str> = dead
        .iter()
        .map(|j| j["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), total, "each dead job once");
    for job in &sent {
        let shown = dead
            .iter()
            .find(|d| d["source"] == job.source.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {out}", job.source));
        assert_eq!(shown["kind"], "copy");
        assert_eq!(shown["targets"], serde_json::json!(job.targets));
        assert_eq!(shown["digest"].as_str(), job.digest.as_deref());
        // One delivery on the queue, one for this listing.
        assert!(shown["receive_count"].as_u64().unwrap() >= 2, "{shown}");
        assert!(shown["sent_at"].as_str().unwrap().ends_with('Z'), "{shown}");
        assert!(shown["sent_timestamp_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
    let unreadable = dead.iter().find(|d| d["kind"] == "unreadable").unwrap();
    assert!(
        unreadable["error"].as_str().unwrap().contains("not JSON"),
        "{unreadable}"
    );

    // Listing consumed nothing, and left every job visible for the next reader.
    assert_eq!(moto.message_count(&dlq).await, total);
    let text = ferry(&moto, &["dlq", "list", "--queue-url", &url]);
    text.assert_success();
    assert!(
        text.stdout.contains(&format!("({total} jobs listed)")),
        "{text}"
    );
    assert!(
        text.stdout.contains(&format!(
            "quay.io/team/app:v0 (sha256:{:064x}) -> 127.0.0.1:5000/mirror/app:v0, 127.0.0.1:5001/mirror/app:v0\n  received ",
            0
        )),
        "{text}"
    );
    assert!(text.stdout.contains("unreadable message: "), "{text}");
    assert!(
        !text.stdout.contains('\u{1b}'),
        "escape codes reach the terminal: {text}"
    );

    // A limit lists fewer, and says so.
    let out = ferry(
        &moto,
        &["dlq", "list", "--queue-url", &url, "--limit=5", "--json"],
    );
    out.assert_success();
    let limited: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(limited["jobs"].as_array().unwrap().len(), 5);
    assert_eq!(limited["complete"], false);
    assert!(
        limited["note"].as_str().unwrap().contains("first 5"),
        "{limited}"
    );
    assert_eq!(moto.message_count(&dlq).await, total);

    let out = ferry(&moto, &["dlq", "redrive", "--queue-url", &url, "--json"]);
    out.assert_success();
    let redriven: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(redriven["moved"], total, "{out}");
    assert_eq!(redriven["not_deleted"], 0);
    assert_eq!(redriven["error"], Value::Null);
    assert_eq!(moto.message_count(&dlq).await, 0);
    assert_eq!(moto.message_count(&url).await, total);

    // Every job back exactly once, its body unchanged.
    let queue = moto.queue(&url);
    let back = receive_at_least(&queue, total).await;
    let bodies: BTreeSet<String> = back.iter().map(|d| d.body.clone()).collect();
    assert_eq!(back.len(), total);
    let mut expected: BTreeSet<String> = sent.iter().map(Job::to_body).collect();
    expected.insert("\u{1b}[2J{not a job".into());
    assert_eq!(bodies, expected);
    assert!(queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    status_json(&moto, &url, RUNNING);

    // Nothing left: a redrive moves nothing.
    let out = ferry(&moto, &["dlq", "redrive", "--queue-url", &url]);
    out.assert_success();
    assert!(out.stdout.contains("moved 0 jobs"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_without_a_redrive_policy() {
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-plain", None).await;

    let status = status_json(&moto, &url, 0);
    assert_eq!(status["dead_letter_queue"], Value::Null);
    moto.queue(&url).send(&jobs(1)).await.unwrap();
    let text = ferry(&moto, &["status", "--queue-url", &url]);
    text.assert_code(RUNNING);
    assert!(
        text.stdout.contains("dead-letter queue: none configured"),
        "{text}"
    );

    // Pointing dlq at it is a mistake of the command line: 2, naming the queue.
    for command in ["list", "redrive"] {
        let out = ferry(&moto, &["dlq", command, "--queue-url", &url]);
        out.assert_code(2);
        assert!(out.stderr.contains(&url), "{out}");
        assert!(out.stderr.contains("no redrive policy"), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
    }
    assert_eq!(moto.message_count(&url).await, 1, "nothing was received");

    // A queue that does not exist cannot be read: an error (1), not "not empty yet".
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint());
    let out = ferry(&moto, &["status", "--queue-url", &missing]);
    out.assert_code(1);
    assert!(out.stderr.contains("GetQueueAttributes"), "{out}");
    assert!(!out.stderr.contains(support::MOTO_ACCESS_KEY), "{out}");
}
