//! The local model end to end (the focused set that runs it; other tests use the keyword
//! embedder): a real fixture is searchable as soon as it is `ready`, its vectors follow from a
//! background job that shows its progress, and then questions worded unlike the document find
//! their passage through `/search` and a retrieval-only chat — while a question the document
//! does not answer gets no passage, under the default similarity threshold.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, spawn_app_with};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Questions of eval/questions.json about the R FAQ, and a snippet of their answering passage.
const PARAPHRASED: [(&str, &str); 4] = [
    (
        "Am I allowed to use this software in paid consulting or inside a business?",
        "It only restricts distribution of R or of other programs",
    ),
    (
        "Why does a test for exact sameness between two decimal calculations come out false?",
        "will not reliably be equal unless they have been computed",
    ),
    (
        "Why do I get a negative answer when I square minus two without brackets?",
        "misunderstanding the precedence rules for expressions",
    ),
    (
        "How can I make bitmap image files from a script on a headless server with no display attached?",
        "an X11 server that does not require a screen",
    ),
];

/// An app embedding with the local model (plus `overrides`), with job workers, and an owner's
/// avatar in a project of their own.
struct LocalAvatar {
    app: TestApp,
    owner: TestUser,
    pid: Uuid,
    /// The avatar as created.
    avatar: Value,
    /// Its documents' path.
    documents: String,
}

async fn local_avatar(overrides: &[(&str, &str)]) -> LocalAvatar {
    let mut all = vec![("APP__EMBEDDINGS__PROVIDER", "local")];
    all.extend_from_slice(overrides);
    let app = spawn_app_with(AppOptions {
        overrides: &all,
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "r").await;
    let created = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "R helper", "system_prompt": "Answer from the documents."}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let documents = format!(
        "/api/v1/projects/{pid}/avatars/{}/documents",
        created.json["id"].as_str().unwrap()
    );
    LocalAvatar {
        app,
        owner,
        pid,
        avatar: created.json,
        documents,
    }
}

fn collapsed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn a_real_document_is_searchable_at_once_and_paraphrased_questions_find_it_once_indexed() {
    let LocalAvatar {
        app,
        owner,
        pid,
        avatar,
        documents,
    } = local_avatar(&[
        // The deployment default (config/test.toml keeps 0 for the keyword embedder).
        ("APP__AVATARS__DEFAULT_SIMILARITY_THRESHOLD", "0.3"),
    ])
    .await;
    let threshold = avatar["rag"]["similarity_threshold"].as_f64().unwrap();
    assert!((threshold - 0.3).abs() < 1e-6, "{threshold}");
    let aid = avatar["id"].as_str().unwrap();
    let bytes = std::fs::read(format!("{FIXTURES}/R-FAQ.pdf")).unwrap();
    let uploaded = app.upload(&owner, &documents, "R-FAQ.pdf", bytes).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let document = format!("{documents}/{}", uploaded.json["id"].as_str().unwrap());

    // Ready before its vectors: the job embeds a batch at a time (seconds each).
    let ready = crate::documents::settled(&app, &owner, &document).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let chunks = ready["chunks_count"].as_i64().unwrap();
    assert!(chunks > 50, "{ready}");
    let indexed = ready["semantic_indexed_chunks"].as_i64().unwrap();
    assert!(indexed < chunks, "{ready}");
    // Searchable at once, by its words.
    let search = format!("/api/v1/projects/{pid}/avatars/{aid}/search");
    let found = app
        .post_as(
            &owner,
            &search,
            &json!({"query": "garbage collection memory"}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert!(
        !found.json["items"].as_array().unwrap().is_empty(),
        "{}",
        found.text
    );

    crate::helpers::eventually(
        Duration::from_secs(300),
        "every chunk has its vector",
        || async {
            let view = app.get_as(&owner, &document).await.json;
            if view["semantic_indexed_chunks"].as_i64() == Some(chunks) {
                Ok(())
            } else {
                Err(view)
            }
        },
    )
    .await;

    for (question, snippet) in PARAPHRASED {
        let response = app
            .post_as(&owner, &search, &json!({"query": question, "top_k": 3}))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        let items = response.json["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|item| collapsed(item["text"].as_str().unwrap()).contains(snippet)),
            "{question}: {items:#?}"
        );
        assert!(
            items
                .iter()
                .all(|item| item["similarity"].as_f64().unwrap() >= 0.3)
        );
    }
    let off_topic = app
        .post_as(
            &owner,
            &search,
            &json!({"query": "What temperature should I bake sourdough bread at?"}),
        )
        .await;
    assert_eq!(off_topic.json["items"], json!([]), "{}", off_topic.text);

    // No LLM is configured: the answer quotes the passage, or says nothing matched.
    let conversation = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars/{aid}/conversations"),
            &json!({"title": "paraphrases"}),
        )
        .await;
    assert_eq!(conversation.status, 201, "{}", conversation.text);
    let messages = format!(
        "/api/v1/projects/{pid}/conversations/{}/messages",
        conversation.json["id"].as_str().unwrap()
    );
    let answer = |content: &'static str| {
        let (app, owner, messages) = (&app, &owner, &messages);
        async move {
            let response = app
                .post_as(owner, messages, &json!({"content": content}))
                .await;
            assert_eq!(response.status, 200, "{}", response.text);
            let message: Value = response.json["assistant_message"].clone();
            collapsed(message["content"].as_str().unwrap())
        }
    };
    let (question, snippet) = PARAPHRASED[2];
    let quoted = answer(question).await;
    assert!(quoted.contains(snippet), "{quoted}");
    let nothing = answer("Which wine goes well with grilled salmon?").await;
    assert!(
        nothing.contains("none of them matches this question"),
        "{nothing}"
    );
}

#[tokio::test]
async fn a_ready_document_whose_indexing_task_was_lost_is_indexed_by_the_recovery() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let LocalAvatar {
        app,
        owner,
        documents,
        ..
    } = local_avatar(&[]).await;
    let uploaded = app
        .upload(
            &owner,
            &documents,
            "guide.md",
            crate::documents::GUIDE.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().unwrap().to_owned();
    let document = format!("{documents}/{id}");
    let indexed = || async {
        let view = app.get_as(&owner, &document).await.json;
        if view["status"] == "ready" && view["semantic_indexed_chunks"] == view["chunks_count"] {
            Ok(())
        } else {
            Err(view)
        }
    };
    crate::helpers::eventually(Duration::from_secs(60), "indexed", indexed).await;

    // As if its vectors had never been computed and its task were gone.
    app.context
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE document_chunks SET embedding = NULL WHERE document_id = $1::uuid",
            [id.clone().into()],
        ))
        .await
        .unwrap();
    app.context
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE documents SET semantic_indexed_chunks = 0 WHERE id = $1::uuid",
            [id.clone().into()],
        ))
        .await
        .unwrap();
    assert_eq!(
        app.get_as(&owner, &document).await.json["semantic_indexed_chunks"],
        0
    );
    // The recovery job (every 15 s) queues it again.
    crate::helpers::eventually(Duration::from_secs(60), "indexed again", indexed).await;
}

#[tokio::test]
async fn a_missing_model_stops_start_up_with_one_line_that_says_how_to_install_it() {
    use avatar_platform::app::{Application, RunOptions};
    let database = crate::helpers::TestDatabase::create().await;
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-model");
    let settings = crate::helpers::settings_for(
        &database.url,
        data.path(),
        &[
            ("APP__EMBEDDINGS__PROVIDER", "local"),
            (
                "APP__EMBEDDINGS__LOCAL_MODEL_DIR",
                missing.to_str().unwrap(),
            ),
        ],
    );
    let options = RunOptions {
        http: false,
        workers: Some(0),
        handle_signals: false,
        ..RunOptions::default()
    };
    let refused = Application::build(settings, options).await;
    let message = format!("{:#}", refused.err().expect("no model, no start"));
    assert!(message.contains("tokenizer.json is missing"), "{message}");
    assert!(message.contains("make setup"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}
