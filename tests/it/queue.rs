//! The SQS job queue against a real SQS API (moto): batched sends, long-poll receives,
//! redelivery after the visibility timeout, deletes, and dead-letter redrive.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::receive_at_least;
use ferry::job::{new_plan_id, Job};
use ferry::queue::{Queue, QueueError};
use support::Moto;

fn jobs(n: usize) -> Vec<Job> {
    let plan_id = new_plan_id();
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"v":1,"plan_id":"{plan_id}","source":"quay.io/a/img:{i}","targets":["127.0.0.1:5000/m/img:{i}","127.0.0.1:5001/m/img:{i}"],"arch":["arm64:v8"]}}"#
            );
            Job::parse(&body).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn sends_and_receives_25_jobs() {
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-jobs", None).await;
    let queue = moto.queue(&url);
    let sent = jobs(25);
    let summary = queue.send(&sent).await.unwrap();
    assert_eq!(summary.sent, 25);

    let deliveries = receive_at_least(&queue, 25).await;
    assert_eq!(deliveries.len(), 25);
    let mut received: BTreeMap<String, Job> = BTreeMap::new();
    for d in &deliveries {
        assert_eq!(d.receive_count, 1);
        assert!(!d.message_id.is_empty() && !d.receipt.is_empty());
        let job = Job::parse(&d.body).unwrap();
        received.insert(job.source.clone(), job);
    }
    let expected: BTreeMap<String, Job> = sent.into_iter().map(|j| (j.source.clone(), j)).collect();
    assert_eq!(received, expected);

    for d in &deliveries {
        queue.delete(&d.receipt).await.unwrap();
    }
    assert_eq!(moto.message_count(&url).await, 0);
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn redelivers_with_a_higher_receive_count_until_deleted() {
    let moto = Moto::start();
    let (url, _) = moto.create_queue("ferry-redeliver", None).await;
    moto.set_visibility_timeout(&url, 1).await;
    let queue = moto.queue(&url);
    queue.send(&jobs(1)).await.unwrap();

    let first = receive_at_least(&queue, 1).await;
    assert_eq!(first[0].receive_count, 1);
    // Hidden now; back after the 1 s visibility timeout.
    let second = receive_at_least(&queue, 1).await;
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    // Releasing it (timeout 0) makes it visible at once.
    queue
        .extend_visibility(&second[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].receive_count, 3);
    // Extending hides it beyond the queue's timeout.
    queue
        .extend_visibility(&third[0].receipt, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());

    queue.delete(&third[0].receipt).await.unwrap();
    assert_eq!(moto.message_count(&url).await, 0);
}

#[tokio::test]
async fn moves_a_message_to_the_dead_letter_queue_after_max_receives() {
    let moto = Moto::start();
    let (url, dlq) = moto.create_queue("ferry-redrive", Some(2)).await;
    let dlq = moto.queue(&dlq.expect("a DLQ was asked for"));
    let queue = moto.queue(&url);
    let sent = jobs(1);
    queue.send(&sent).await.unwrap();

    // Two deliveries, each abandoned (as a crashing worker would).
    for count in 1..=2 {
        let got = receive_at_least(&queue, 1).await;
        assert_eq!(got[0].receive_count, count);
        queue
            .extend_visibility(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    // The third receive moves it instead of delivering it.
    assert!(queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    let dead = receive_at_least(&dlq, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(Job::parse(&dead[0].body).unwrap(), sent[0]);
    assert_eq!(moto.message_count(&url).await, 0);
}

#[tokio::test]
async fn reports_what_could_not_be_sent() {
    let moto = Moto::start();
    let queue = moto.queue(&format!("{}/123456789012/no-such-queue", moto.endpoint()));
    match queue.send(&jobs(12)).await {
        Err(QueueError::NotSent {
            total, not_sent, ..
        }) => assert_eq!((total, not_sent), (12, 12)),
        other => panic!("expected NotSent, got {other:?}"),
    }
    let error = queue.receive(1, Duration::ZERO).await.unwrap_err();
    assert!(error.to_string().contains("ReceiveMessage"), "{error}");
    assert!(
        !error.to_string().contains(support::MOTO_ACCESS_KEY),
        "{error}"
    );
}
