//! Ingestion under hostile input and lost workers: a document that expands past its parser's
//! limits, fairness between tenants, bounded chunking, and a real worker process stopped with
//! SIGTERM and killed with SIGKILL in the middle of a document.

use std::process::Stdio;
use std::time::{Duration, Instant};

use avatar_platform::app::{Application, RunOptions};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::documents::settled;
use crate::fake_openai::{FakeOpenAi, Faults};
use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, TestDatabase, eventually, spawn_app_with};

/// Embeddings that hold every request mentioning `marker` until released.
async fn holding(marker: &'static str) -> FakeOpenAi {
    FakeOpenAi::embeddings(Faults {
        hold: Some(marker),
        ..Faults::default()
    })
    .await
}

async fn avatar(app: &TestApp, owner: &TestUser, pid: Uuid, rag: Value) -> TestResponseJson {
    let response = app
        .create_avatar(
            owner,
            pid,
            &json!({"name": "Guide", "system_prompt": "Answer.", "rag": rag}),
        )
        .await;
    TestResponseJson {
        status: response.status,
        json: response.json,
    }
}

struct TestResponseJson {
    status: u16,
    json: Value,
}

fn documents_path(pid: Uuid, aid: &Value) -> String {
    format!(
        "/api/v1/projects/{pid}/avatars/{}/documents",
        aid.as_str().unwrap()
    )
}

/// A Word file of about 100 KB that expands to `megabytes` of text.
fn expanding_docx(megabytes: usize) -> Vec<u8> {
    use std::io::Write;
    let paragraph = "<w:p><w:r><w:t>Expanding text fills the parser's memory and time. \
                     </w:t></w:r></w:p>";
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(
        br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
    )
    .unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>"#).unwrap();
    for _ in 0..(megabytes * 1024 * 1024 / paragraph.len()) {
        zip.write_all(paragraph.as_bytes()).unwrap();
    }
    zip.write_all(b"</w:body></w:document>").unwrap();
    zip.finish().unwrap();
    buffer.into_inner()
}

#[tokio::test]
async fn a_document_past_its_parsers_limits_fails_readably_and_can_be_reprocessed() {
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__DOCUMENTS__PARSE_TIMEOUT_SECS", "6"),
            ("APP__DOCUMENTS__PARSE_CPU_SECS", "3"),
        ],
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "limits").await;
    let created = avatar(&app, &owner, pid, json!({})).await;
    assert_eq!(created.status, 201);
    let path = documents_path(pid, &created.json["id"]);
    let bomb = expanding_docx(25);
    assert!(bomb.len() < 400 * 1024, "{} bytes", bomb.len());
    let started = Instant::now();
    let uploaded = app.upload(&owner, &path, "bomb.docx", bomb).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().unwrap().to_owned();
    let small = app
        .upload(&owner, &path, "small.txt", b"kettles boil".to_vec())
        .await;

    let document = settled(&app, &owner, &format!("{path}/{id}")).await;
    assert_eq!(document["status"], "failed", "{document}");
    let error = document["error"].as_str().unwrap();
    assert!(
        [
            "parsing used more than 3 s of CPU time and was stopped",
            "parsing exceeded its limits (3 s of CPU time, 2048 MB of memory) and was stopped",
            "parsing took longer than 6 s and was stopped",
        ]
        .contains(&error),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // One attempt, not a loop of them.
    let attempts = app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT attempts FROM documents WHERE id = $1::uuid",
            [id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i32>("", "attempts")
        .unwrap();
    assert_eq!(attempts, 1);
    // The server went on: the other document is ready, and the failed one can be retried.
    let other = settled(
        &app,
        &owner,
        &format!("{path}/{}", small.json["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(other["status"], "ready");
    let again = app
        .post_as(&owner, &format!("{path}/{id}/reprocess"), &json!({}))
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
}

#[tokio::test]
async fn one_tenants_large_documents_do_not_hold_every_worker() {
    let fake = holding("SLOW").await;
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__EMBEDDINGS__PROVIDER", "openai"),
            ("APP__EMBEDDINGS__BASE_URL", &fake.url),
        ],
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    let busy = app.user("busy").await;
    let busy_pid = app.project(&busy, "busy").await;
    let busy_avatar = avatar(&app, &busy, busy_pid, json!({})).await;
    let busy_path = documents_path(busy_pid, &busy_avatar.json["id"]);
    for n in 0..2 {
        let response = app
            .upload(
                &busy,
                &busy_path,
                &format!("big-{n}.txt"),
                format!("SLOW document {n} that takes its time").into_bytes(),
            )
            .await;
        assert_eq!(response.status, 202);
    }
    // Both workers had their turn at the busy tenant's documents: one runs, the other was
    // deferred (queued again for later) rather than taking the second worker.
    eventually(
        Duration::from_secs(10),
        "one busy document runs and the other is deferred",
        || async {
            let row = app
                .context
                .db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT (SELECT count(*) FROM documents WHERE status = 'processing') \
                            AS running, \
                            (SELECT count(*) FROM fang_tasks \
                             WHERE metadata->>'type' = 'documents.process' \
                               AND metadata->>'not_before' IS NOT NULL) AS deferred",
                ))
                .await
                .unwrap()
                .unwrap();
            let running: i64 = row.try_get("", "running").unwrap();
            let deferred: i64 = row.try_get("", "deferred").unwrap();
            if running == 1 && deferred >= 1 {
                Ok(())
            } else {
                Err((running, deferred))
            }
        },
    )
    .await;

    let other = app.user("other").await;
    let other_pid = app.project(&other, "other").await;
    let other_avatar = avatar(&app, &other, other_pid, json!({})).await;
    let other_path = documents_path(other_pid, &other_avatar.json["id"]);
    let started = Instant::now();
    let small = app
        .upload(&other, &other_path, "small.txt", b"kettles".to_vec())
        .await;
    let document = settled(
        &app,
        &other,
        &format!("{other_path}/{}", small.json["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(document["status"], "ready");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?} behind another tenant",
        started.elapsed()
    );
    let listed = app.get_as(&busy, &busy_path).await;
    let processing = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|doc| doc["status"] == "processing")
        .count();
    assert_eq!(processing, 1, "{}", listed.text);
    fake.release();
}

#[tokio::test]
async fn chunking_is_bounded_per_avatar_and_per_document() {
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__DOCUMENTS__MAX_CHUNKS_PER_DOCUMENT", "5")],
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "bounds").await;
    let refused = avatar(
        &app,
        &owner,
        pid,
        json!({"chunk_size": 32, "chunk_overlap": 31}),
    )
    .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.json["error"]["field"], "rag.chunk_overlap");
    let created = avatar(
        &app,
        &owner,
        pid,
        json!({"chunk_size": 32, "chunk_overlap": 16}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);
    let path = documents_path(pid, &created.json["id"]);
    let text: String = (0..60)
        .map(|n| format!("Sentence number {n} says something about kettles and tea.\n\n"))
        .collect();
    let uploaded = app
        .upload(&owner, &path, "long.txt", text.into_bytes())
        .await;
    let document = settled(
        &app,
        &owner,
        &format!("{path}/{}", uploaded.json["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(document["status"], "failed");
    let error = document["error"].as_str().unwrap();
    assert!(
        error.contains("chunks at a chunk size of 32 tokens, more than the 5 allowed"),
        "{error}"
    );
}

/// The real binary as a job worker on `database_url`, sharing `blob_root`.
fn worker_process(
    database_url: &str,
    blob_root: &std::path::Path,
    data_dir: &std::path::Path,
    embeddings_url: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_avatar-platform"))
        .args(["worker", "--workers", "1"])
        .env_clear()
        .env("APP_ENV", "test")
        .env(
            "APP_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("DATABASE_URL", database_url)
        .env("DATA_DIR", data_dir)
        .env("APP__STORAGE__FILESYSTEM__ROOT", blob_root)
        .env("APP__EMBEDDINGS__PROVIDER", "openai")
        .env("APP__EMBEDDINGS__BASE_URL", embeddings_url)
        .env("APP__DOCUMENTS__HEARTBEAT_SECS", "1")
        .env("APP__DOCUMENTS__STALE_AFTER_SECS", "3")
        .env("APP__TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts")
}

async fn status_of(app: &TestApp, id: Uuid) -> (String, i32) {
    let row = app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT status, attempts FROM documents WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get("", "status").unwrap(),
        row.try_get("", "attempts").unwrap(),
    )
}

async fn wait_for_status(app: &TestApp, id: Uuid, wanted: &str, within: Duration) -> i32 {
    eventually(within, &format!("the document is {wanted}"), || async {
        let (status, attempts) = status_of(app, id).await;
        if status == wanted {
            Ok(attempts)
        } else {
            Err(status)
        }
    })
    .await
}

#[tokio::test]
async fn a_worker_stopped_or_killed_mid_document_loses_nothing_and_duplicates_nothing() {
    let fake = holding("kettle").await;
    let database = TestDatabase::create().await;
    let database_url = database.url.clone();
    let blobs = tempfile::tempdir().unwrap();
    let blob_root = blobs.path().display().to_string();
    let recovery = [
        ("APP__STORAGE__FILESYSTEM__ROOT", blob_root.as_str()),
        ("APP__EMBEDDINGS__PROVIDER", "openai"),
        ("APP__EMBEDDINGS__BASE_URL", fake.url.as_str()),
        ("APP__DOCUMENTS__HEARTBEAT_SECS", "1"),
        ("APP__DOCUMENTS__STALE_AFTER_SECS", "3"),
        ("APP__DOCUMENTS__RECOVERY_CRON", "* * * * * *"),
    ];
    // The API only (no workers): the workers are the processes below.
    let app = spawn_app_with(AppOptions {
        overrides: &recovery,
        database: Some(database),
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "crash").await;
    let created = avatar(
        &app,
        &owner,
        pid,
        json!({"chunk_size": 64, "chunk_overlap": 0}),
    )
    .await;
    let path = documents_path(pid, &created.json["id"]);
    let text: String = (0..40)
        .map(|n| format!("Paragraph {n} explains how kettle number {n} is descaled.\n\n"))
        .collect();
    let uploaded = app
        .upload(&owner, &path, "kettles.txt", text.into_bytes())
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = Uuid::parse_str(uploaded.json["id"].as_str().unwrap()).unwrap();
    let data_dir = tempfile::tempdir().unwrap();

    // SIGTERM mid-document: the worker stops within moments, the document waits again and
    // the interrupted attempt is not counted.
    let mut worker = worker_process(&database_url, blobs.path(), data_dir.path(), &fake.url);
    wait_for_status(&app, id, "processing", Duration::from_secs(30)).await;
    let pid_of_worker = worker.id().unwrap().to_string();
    let stopping = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid_of_worker])
        .status()
        .unwrap();
    assert!(sent.success());
    let exited = tokio::time::timeout(Duration::from_secs(10), worker.wait()).await;
    assert!(
        exited.is_ok(),
        "the worker did not stop within 10 s of SIGTERM"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    let (status, attempts) = status_of(&app, id).await;
    assert_eq!((status.as_str(), attempts), ("uploaded", 0));

    // SIGKILL mid-document: nothing is told; the heartbeat stops.
    let mut worker = worker_process(&database_url, blobs.path(), data_dir.path(), &fake.url);
    wait_for_status(&app, id, "processing", Duration::from_secs(30)).await;
    worker.kill().await.unwrap();
    let killed = Instant::now();
    fake.release();

    // Another worker picks it up within seconds, driven by the silent heartbeat.
    let mut settings = (*app.context.settings).clone();
    settings.server.bind = "127.0.0.1:0".into();
    let survivor = Application::build(
        settings,
        RunOptions {
            http: false,
            workers: Some(1),
            migrate: false,
            handle_signals: false,
            ..RunOptions::default()
        },
    )
    .await
    .unwrap();
    let attempts = wait_for_status(&app, id, "ready", Duration::from_secs(60)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "recovered after {:?}",
        killed.elapsed()
    );
    assert_eq!(
        attempts, 2,
        "the SIGTERM run was not counted, the killed one was"
    );
    let document = app.get_as(&owner, &format!("{path}/{id}")).await;
    let count = document.json["chunks_count"].as_i64().unwrap();
    let ordinals: Vec<i32> = app
        .context
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT ordinal FROM document_chunks WHERE document_id = $1 ORDER BY ordinal",
            [id.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<i32>("", "ordinal").unwrap())
        .collect();
    assert_eq!(ordinals, (0..count as i32).collect::<Vec<_>>());
    assert!(fake.embedding_requests() > 0);
    survivor.shutdown().await;
}

#[tokio::test]
async fn a_document_whose_runs_keep_dying_fails_once_out_of_attempts() {
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__DOCUMENTS__HEARTBEAT_SECS", "1"),
            ("APP__DOCUMENTS__STALE_AFTER_SECS", "2"),
            ("APP__DOCUMENTS__RECOVERY_CRON", "* * * * * *"),
            ("APP__DOCUMENTS__MAX_ATTEMPTS", "3"),
        ],
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "dying").await;
    let created = avatar(&app, &owner, pid, json!({})).await;
    let path = documents_path(pid, &created.json["id"]);
    let uploaded = app
        .upload(&owner, &path, "a.txt", b"kettles".to_vec())
        .await;
    let id = Uuid::parse_str(uploaded.json["id"].as_str().unwrap()).unwrap();
    wait_for_status(&app, id, "ready", Duration::from_secs(30)).await;
    // As a worker dying on its third attempt would leave it: processing, silent.
    app.context
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE documents SET status = 'processing', attempts = 3, \
             processing_run_id = gen_random_uuid(), heartbeat_at = now() - interval '1 minute' \
             WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap();
    wait_for_status(&app, id, "failed", Duration::from_secs(20)).await;
    let document = app.get_as(&owner, &format!("{path}/{id}")).await;
    assert_eq!(
        document.json["error"],
        "processing stopped 3 times without finishing (its worker was lost); giving up"
    );
    assert_eq!(document.json["chunks_count"], 0);
    let failed = app.events_of_type("documents.document_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
}
