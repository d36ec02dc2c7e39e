//! Faults with real processes ([`crate::processes`]): a server killed with SIGKILL in the
//! middle of ingestion, and two servers and a worker sharing one database. `make test` runs
//! them at a small size; `make faults` runs them large (`FAULTS_DOCUMENTS`, default 50).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::fixtures::TestUser;
use crate::helpers::{early_in_window, eventually};
use crate::processes::{Deployment, Process};

/// How many documents a run ingests: `FAULTS_DOCUMENTS`, or `default`.
fn documents(default: usize) -> usize {
    std::env::var("FAULTS_DOCUMENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The `n`-th document of a run: the real PDFs first, then Markdown handbooks of their own
/// words (no two alike, so none is refused as a duplicate).
fn document(n: usize) -> (String, Vec<u8>) {
    const PDFS: [&str; 3] = ["R-FAQ.pdf", "gnu-maintain.pdf", "R-data.pdf"];
    if let Some(name) = PDFS.get(n) {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        return (
            (*name).to_owned(),
            std::fs::read(path).expect("the fixture"),
        );
    }
    let text: String = (0..120)
        .map(|section| {
            format!(
                "# Part {section} of handbook {n}\n\nHandbook{n} part{section} covers \
                 routine{n}x{section}: begin with step{section} and finish with check{n}.\n\n"
            )
        })
        .collect();
    (format!("handbook-{n}.md"), text.into_bytes())
}

struct Tenant {
    owner: TestUser,
    pid: Uuid,
    aid: Uuid,
}

impl Tenant {
    async fn new(deployment: &Deployment, name: &str) -> Tenant {
        let owner = deployment.control.user(name).await;
        let pid = deployment.control.project(&owner, name).await;
        let aid = deployment.control.avatar(&owner, pid, name).await;
        Tenant { owner, pid, aid }
    }

    async fn upload(&self, deployment: &Deployment, n: usize) -> Uuid {
        let (filename, bytes) = document(n);
        let path = format!(
            "/api/v1/projects/{}/avatars/{}/documents",
            self.pid, self.aid
        );
        let uploaded = deployment
            .control
            .upload(&self.owner, &path, &filename, bytes)
            .await;
        assert_eq!(uploaded.status, 202, "{}", uploaded.text);
        uploaded.json["id"].as_str().unwrap().parse().unwrap()
    }
}

/// Documents by status.
async fn statuses(deployment: &Deployment) -> BTreeMap<String, i64> {
    deployment
        .rows("SELECT status, count(*) AS n FROM documents GROUP BY status")
        .await
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "status").unwrap(),
                row.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

async fn all_ready(deployment: &Deployment, count: usize, within: Duration) {
    eventually(within, "every document is ready", || async {
        let statuses = statuses(deployment).await;
        if statuses.get("ready").copied() == Some(count as i64) {
            return Ok(());
        }
        let tasks: Vec<String> = deployment
            .rows(
                "SELECT state || ' ' || retries || ' ' || scheduled_at || ' ' || \
                 coalesce(error_message, '') || ' ' || metadata::text AS t FROM fang_tasks",
            )
            .await
            .iter()
            .map(|row| row.try_get::<String>("", "t").unwrap())
            .collect();
        Err((statuses, tasks))
    })
    .await;
}

/// Each document's chunks once, as many as it says it has; each blob a document's, and each
/// document's blob there.
async fn nothing_doubled_or_orphaned(deployment: &Deployment) {
    let doubled = deployment
        .number(
            "SELECT count(*) AS n FROM (SELECT document_id, ordinal FROM document_chunks \
             GROUP BY document_id, ordinal HAVING count(*) > 1) d",
        )
        .await;
    assert_eq!(doubled, 0, "chunks stored twice");
    let miscounted = deployment
        .number(
            "SELECT count(*) AS n FROM documents d WHERE chunks_count <> \
             (SELECT count(*) FROM document_chunks c WHERE c.document_id = d.id) \
             OR chunks_count = 0",
        )
        .await;
    assert_eq!(
        miscounted, 0,
        "documents whose chunks are not what they say"
    );
    let keys: Vec<String> = {
        let mut keys: Vec<String> = deployment
            .rows("SELECT blob_key FROM documents")
            .await
            .iter()
            .map(|row| row.try_get::<String>("", "blob_key").unwrap())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(deployment.blobs().await, keys, "blobs and documents differ");
}

#[tokio::test]
async fn a_server_killed_during_ingestion_loses_no_document_and_doubles_no_chunk() {
    let count = documents(6);
    let mut deployment = Deployment::new(&[]).await;
    let tenant = Tenant::new(&deployment, "ingest").await;
    let mut first = deployment.serve("serve-1", 2).await;
    deployment.through(&first);
    for n in 0..count {
        tenant.upload(&deployment, n).await;
    }
    // Killed while a document is being processed (its run holds it as `processing`).
    let interrupted: Vec<Uuid> = eventually(
        Duration::from_secs(60),
        "a document is being processed",
        || async {
            let processing: Vec<Uuid> = deployment
                .rows("SELECT id FROM documents WHERE status = 'processing'")
                .await
                .iter()
                .map(|row| row.try_get::<Uuid>("", "id").unwrap())
                .collect();
            if processing.is_empty() {
                Err(statuses(&deployment).await)
            } else {
                Ok(processing)
            }
        },
    )
    .await;
    first.kill9().await;
    let left = statuses(&deployment).await;
    assert!(
        left.get("ready").copied().unwrap_or(0) < count as i64,
        "the kill came after the work: {left:?}"
    );

    let restarted = std::time::Instant::now();
    let second = deployment.serve("serve-2", 2).await;
    all_ready(
        &deployment,
        count,
        Duration::from_secs(60 + 10 * count as u64),
    )
    .await;
    let recovered_in = restarted.elapsed();
    nothing_doubled_or_orphaned(&deployment).await;
    println!(
        "kill -9 during ingestion: {count} documents, {} ready before the kill, {} being \
         processed; all ready {:.1} s after the restart",
        left.get("ready").copied().unwrap_or(0),
        interrupted.len(),
        recovered_in.as_secs_f64()
    );
    // The run the kill interrupted was taken over and finished by the new process.
    let finished_by_second: BTreeSet<String> = second.processed().into_iter().collect();
    for id in &interrupted {
        assert!(
            finished_by_second.contains(&id.to_string()),
            "{id} was interrupted and not finished by the second process"
        );
    }
    // Each document's `DocumentProcessed` once.
    let processed = deployment
        .number(
            "SELECT count(*) AS n FROM event_outbox \
             WHERE event_type = 'documents.document_processed'",
        )
        .await;
    assert_eq!(processed, count as i64);
}

#[tokio::test]
async fn two_servers_and_a_worker_share_the_work_and_each_effect_happens_once() {
    let count = documents(8);
    let mut deployment = Deployment::new(&[
        ("APP__JOBS__WORKERS", "4"),
        ("APP__DOCUMENTS__MAX_PROCESSING_PER_PROJECT", "3"),
        ("APP__CHAT__PUBLIC_REQUESTS_PER_MINUTE", "4"),
    ])
    .await;
    let tenant = Tenant::new(&deployment, "scale").await;
    let servers = [
        deployment.serve("serve-a", 1).await,
        deployment.serve("serve-b", 1).await,
    ];
    let worker = deployment.worker("worker", 2);
    let started = std::time::Instant::now();
    for n in 0..count {
        deployment.through(&servers[n % 2]);
        tenant.upload(&deployment, n).await;
    }
    all_ready(
        &deployment,
        count,
        Duration::from_secs(60 + 10 * count as u64),
    )
    .await;
    nothing_doubled_or_orphaned(&deployment).await;

    // Each document processed by exactly one process, and not all by the same one.
    let processes: [&Process; 3] = [&servers[0], &servers[1], &worker];
    let mut by_document: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for process in processes {
        for document in process.processed() {
            by_document
                .entry(document)
                .or_default()
                .push(process.name.as_str());
        }
    }
    assert_eq!(by_document.len(), count, "{by_document:?}");
    assert!(
        by_document.values().all(|names| names.len() == 1),
        "a document processed twice: {by_document:?}"
    );
    let busy: BTreeSet<&str> = by_document.values().flatten().copied().collect();
    assert!(
        busy.len() >= 2,
        "one process did all the work: {by_document:?}"
    );
    let share = |name: &str| {
        by_document
            .values()
            .filter(|names| names.contains(&name))
            .count()
    };
    println!(
        "two servers and a worker: {count} documents ready in {:.1} s, processed by serve-a {}, \
         serve-b {}, worker {}",
        started.elapsed().as_secs_f64(),
        share("serve-a"),
        share("serve-b"),
        share("worker")
    );

    // The per-key rate limit is one count across processes (Redis), not one per process.
    let key = {
        let created = deployment
            .control
            .post_as(
                &tenant.owner,
                &format!("/api/v1/projects/{}/api-keys", tenant.pid),
                &json!({"name": "site"}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.json["key"].as_str().unwrap().to_owned()
    };
    early_in_window(Duration::from_secs(60)).await;
    let ask = |server: &Process| {
        let request = deployment
            .control
            .client
            .post(format!(
                "{}/api/v1/public/avatars/{}/chat",
                server.address.as_deref().unwrap(),
                tenant.aid
            ))
            .header("X-Api-Key", &key)
            .json(&json!({"end_user": {"external_id": "ada"}, "message": "Which routine?"}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let mut answered = Vec::new();
    for n in 0..5 {
        answered.push(ask(&servers[n % 2]).await);
    }
    assert_eq!(answered, [200, 200, 200, 200, 429], "{answered:?}");

    // Every event delivered once to each subscriber, and the subscribers' effects once: the
    // audit log holds each audited event once, the usage read model counts each answer once.
    eventually(
        Duration::from_secs(30),
        "every event is delivered",
        || async {
            match deployment
                .number("SELECT count(*) AS n FROM event_deliveries WHERE status <> 'delivered'")
                .await
            {
                0 => Ok(()),
                pending => Err(pending),
            }
        },
    )
    .await;
    let redelivered = deployment
        .number("SELECT count(*) AS n FROM event_deliveries WHERE attempts <> 1")
        .await;
    assert_eq!(redelivered, 0, "deliveries claimed more than once");
    let audited = deployment
        .number(
            "SELECT count(*) AS n FROM event_deliveries d \
             WHERE d.subscriber = 'analytics.audit' \
               AND (SELECT count(*) FROM audit_log a WHERE a.id = d.event_id) <> 1",
        )
        .await;
    assert_eq!(audited, 0, "audited events without exactly one entry");
    let answers = deployment
        .number(
            "SELECT ((SELECT coalesce(sum(answers), 0) FROM analytics_daily) \
                  - (SELECT count(*) FROM messages WHERE role = 'assistant'))::bigint AS n",
        )
        .await;
    assert_eq!(answers, 0, "answers counted other than once");
}
