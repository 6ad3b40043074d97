//! `ferry status`: a queue's jobs waiting, in flight and delayed, and its dead-letter
//! queue's (found from the redrive policy), as text or JSON. The exit status says where the
//! migration stands (see `exit`), so a script can wait for it to finish. Reading the queues
//! is `ferry::queue`'s.

use ferry::queue::{JobCounts, Progress, QueueStatus, SqsQueue};

use crate::args::StatusArgs;
use crate::exit::Status;

pub async fn run(args: StatusArgs) -> anyhow::Result<Status> {
    let queue = SqsQueue::from_env(&args.queue_url).await;
    let status = queue.status().await?;
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(match status.progress {
        Progress::Done => Status::Success,
        Progress::Running => Status::Pending,
        Progress::DeadJobs => Status::DeadJobs,
    })
}

fn render(status: &QueueStatus) -> String {
    let counts = |jobs: &JobCounts| {
        format!(
            "  waiting {}, in flight {}, delayed {}\n",
            jobs.waiting, jobs.in_flight, jobs.delayed
        )
    };
    let mut text = format!(
        "queue: {}\n{}",
        status.queue.url,
        counts(&status.queue.jobs)
    );
    match &status.dead_letter_queue {
        Some(dead) => {
            text += &format!(
                "dead-letter queue: {} (a job moves there after {})\n{}",
                dead.url,
                plural(dead.max_receive_count.into(), "receive"),
                counts(&dead.jobs)
            );
        }
        None => text += "dead-letter queue: none configured (the queue has no redrive policy)\n",
    }
    let dead = status
        .dead_letter_queue
        .as_ref()
        .map_or(0, |d| d.jobs.total());
    text += &match status.progress {
        Progress::Done => "done: the queue and its dead-letter queue are empty\n".to_string(),
        Progress::Running => format!(
            "running: {} on the queue\n",
            plural(status.queue.jobs.total(), "job")
        ),
        Progress::DeadJobs => format!(
            "dead jobs: the queue is empty, {} in the dead-letter queue \
             (ferry dlq list, ferry dlq redrive)\n",
            plural(dead, "job")
        ),
    };
    text
}

/// `1 job`, `2 jobs`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::queue::{DeadLetterState, QueueState};

    #[test]
    fn renders_counts_and_progress() {
        let queue = QueueState {
            url: "http://q/jobs".into(),
            jobs: JobCounts::default(),
        };
        let dead = DeadLetterState {
            url: "http://q/dlq".into(),
            max_receive_count: 5,
            jobs: JobCounts {
                waiting: 2,
                ..JobCounts::default()
            },
        };
        let text = render(&QueueStatus::new(queue.clone(), Some(dead)));
        assert!(text.contains("dead-letter queue: http://q/dlq (a job moves there after 5 receives)\n  waiting 2, in flight 0, delayed 0"), "{text}");
        assert!(text.ends_with("dead jobs: the queue is empty, 2 jobs in the dead-letter queue (ferry dlq list, ferry dlq redrive)\n"), "{text}");
        let text = render(&QueueStatus::new(queue, None));
        assert!(
            text.contains("dead-letter queue: none configured"),
            "{text}"
        );
        assert!(
            text.ends_with("done: the queue and its dead-letter queue are empty\n"),
            "{text}"
        );
    }
}
