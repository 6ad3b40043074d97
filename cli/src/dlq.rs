//! `ferry dlq list` and `ferry dlq redrive`: a queue's dead jobs shown (without removing
//! them) or sent back to the queue, as text or JSON. Finding the dead-letter queue, reading
//! it without consuming it and moving jobs without losing or doubling any is
//! `ferry::queue`'s; this file prints.

use ferry::queue::{DeadBody, DeadJob, DeadJobs, Redriven, SqsQueue};

use crate::args::{DlqCommand, DlqListArgs, DlqRedriveArgs};
use crate::exit::Status;
use crate::status::plural;

pub async fn run(command: DlqCommand) -> anyhow::Result<Status> {
    match command {
        DlqCommand::List(args) => list(args).await,
        DlqCommand::Redrive(args) => redrive(args).await,
    }
}

async fn list(args: DlqListArgs) -> anyhow::Result<Status> {
    let queue = SqsQueue::from_env(&args.queue_url).await;
    let dead = queue.list_dead_jobs(args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string(&dead)?);
    } else {
        print!("{}", render_list(&dead));
    }
    Ok(Status::Success)
}

async fn redrive(args: DlqRedriveArgs) -> anyhow::Result<Status> {
    let queue = SqsQueue::from_env(&args.queue_url).await;
    let mut redriven = queue.redrive_dead_jobs().await?;
    if args.json {
        println!("{}", serde_json::to_string(&redriven)?);
    } else {
        print!("{}", render_redrive(&redriven));
    }
    match redriven.error.take() {
        Some(error) => Err(anyhow::Error::from(error).context("redrive stopped")),
        None => Ok(Status::Success),
    }
}

/// Text from a queue (message ids, unreadable bodies) with control characters escaped, so
/// a hostile message cannot drive the terminal.
fn printable(text: &str) -> String {
    text.escape_debug().to_string()
}

fn render_job(job: &DeadJob) -> String {
    let what = match &job.body {
        DeadBody::Copy(copy) => {
            let digest = copy
                .digest
                .as_deref()
                .map_or(String::new(), |d| format!(" ({d})"));
            format!("{}{digest} -> {}", copy.source, copy.targets.join(", "))
        }
        DeadBody::Plan(plan) => {
            let sources: Vec<&str> = plan.rules.keys().map(String::as_str).collect();
            format!(
                "plan job {}: {} ({})",
                printable(&plan.plan_id),
                plural(sources.len() as u64, "rule"),
                printable(&ferry::error::truncate(&sources.join(", "), 200))
            )
        }
        DeadBody::Unreadable { error, body } => format!(
            "unreadable message: {} (body: \"{}\")",
            printable(error),
            printable(body)
        ),
    };
    format!(
        "{what}\n  received {}, first sent {}, message {}\n",
        plural(job.receive_count.into(), "time"),
        job.sent_at.as_deref().unwrap_or("at an unknown time"),
        printable(&job.message_id)
    )
}

fn render_list(dead: &DeadJobs) -> String {
    let mut text = format!(
        "dead-letter queue: {} ({} listed)\n",
        dead.dead_letter_queue,
        plural(dead.jobs.len() as u64, "job")
    );
    for job in &dead.jobs {
        text += &render_job(job);
    }
    if let Some(note) = &dead.note {
        text += &format!("not all dead jobs could be listed: {note}\n");
    }
    text
}

fn render_redrive(redriven: &Redriven) -> String {
    let mut text = format!(
        "moved {} from {} back to {}\n",
        plural(redriven.moved as u64, "job"),
        redriven.dead_letter_queue,
        redriven.queue
    );
    if redriven.not_deleted > 0 {
        text += &format!(
            "{} sent back could not be deleted from the dead-letter queue: they are in both, \
             and running a job twice is harmless\n",
            plural(redriven.not_deleted as u64, "job")
        );
    }
    text += &format!(
        "left in the dead-letter queue: about {}\n",
        redriven.left.total()
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::job::Job;

    #[test]
    fn renders_dead_jobs_and_escapes_what_is_not_a_job() {
        let job = Job::parse(
            r#"{"v":1,"source":"a.io/x@sha256:0000000000000000000000000000000000000000000000000000000000000000","targets":["b.io/x:1","c.io/x:1"]}"#,
        )
        .unwrap();
        let copy = DeadJob {
            message_id: "m1".into(),
            body: DeadBody::Copy(job),
            receive_count: 2,
            sent_timestamp_ms: Some(0),
            sent_at: Some("1970-01-01T00:00:00Z".into()),
        };
        let text = render_job(&copy);
        assert!(text.starts_with("a.io/x@sha256:0000"), "{text}");
        assert!(text.contains(" -> b.io/x:1, c.io/x:1\n  received 2 times, first sent 1970-01-01T00:00:00Z, message m1"), "{text}");
        let hostile = DeadJob {
            message_id: "m\u{1b}[2J".into(),
            body: DeadBody::Unreadable {
                error: "not JSON".into(),
                body: "\u{1b}]0;owned\u{7}".into(),
            },
            receive_count: 1,
            sent_timestamp_ms: None,
            sent_at: None,
        };
        let text = render_job(&hostile);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("first sent at an unknown time"), "{text}");
    }
}
