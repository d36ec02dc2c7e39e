//! Documents over HTTP with real workers: upload, processing of every format, duplicates,
//! limits, failures, reprocess, delete, tenancy, crash recovery and search.

use std::time::Duration;

use avatar_platform::core::cache::ExactCaches;
use avatar_platform::core::config::RetrievalSettings;
use avatar_platform::core::embeddings::{Embedder, LexicalEmbedder, cosine};
use avatar_platform::core::ids::{AvatarId, ProjectId};
use avatar_platform::modules::documents::DocumentsService;
use avatar_platform::modules::documents::testkit::retrieval::{
    Retriever, SearchRequest, VectorPath,
};
use avatar_platform::modules::documents::testkit::vector_index;
use avatar_platform::modules::platform_config::PlatformConfigService;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fake_openai::{FakeOpenAi, Faults};
use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, TestResponse, eventually, spawn_app_with};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// An app with job workers, a user and a project with one avatar.
struct Knowledge {
    app: TestApp,
    owner: TestUser,
    pid: Uuid,
    aid: Uuid,
}

async fn knowledge(overrides: &[(&str, &str)]) -> Knowledge {
    let app = spawn_app_with(AppOptions {
        overrides,
        workers: 2,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "knowledge").await;
    let aid = avatar(&app, &owner, pid, json!({})).await;
    Knowledge {
        app,
        owner,
        pid,
        aid,
    }
}

async fn avatar(app: &TestApp, owner: &TestUser, pid: Uuid, rag: Value) -> Uuid {
    let response = app
        .create_avatar(
            owner,
            pid,
            &json!({"name": "Guide", "system_prompt": "Answer from the documents.", "rag": rag}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap()
}

impl Knowledge {
    fn documents_path(&self) -> String {
        format!(
            "/api/v1/projects/{}/avatars/{}/documents",
            self.pid, self.aid
        )
    }

    async fn upload(&self, filename: &str, bytes: Vec<u8>) -> TestResponse {
        self.app
            .upload(&self.owner, &self.documents_path(), filename, bytes)
            .await
    }

    async fn uploaded(&self, filename: &str, bytes: Vec<u8>) -> Uuid {
        let response = self.upload(filename, bytes).await;
        assert_eq!(response.status, 202, "{}", response.text);
        assert_eq!(response.json["status"], "uploaded");
        Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap()
    }

    async fn document(&self, id: Uuid) -> TestResponse {
        self.app
            .get_as(&self.owner, &format!("{}/{id}", self.documents_path()))
            .await
    }

    /// Polls until the document is `ready` or `failed`.
    async fn settled(&self, id: Uuid) -> Value {
        settled(
            &self.app,
            &self.owner,
            &format!("{}/{id}", self.documents_path()),
        )
        .await
    }

    async fn search(&self, query: &str) -> Vec<Value> {
        let response = self
            .app
            .post_as(
                &self.owner,
                &format!("/api/v1/projects/{}/avatars/{}/search", self.pid, self.aid),
                &json!({"query": query}),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        response.json["items"].as_array().unwrap().clone()
    }

    async fn chunk_ordinals(&self, document: Uuid) -> Vec<i32> {
        self.app
            .context
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT ordinal FROM document_chunks WHERE document_id = $1 ORDER BY ordinal",
                [document.into()],
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.try_get::<i32>("", "ordinal").unwrap())
            .collect()
    }
}

/// Polls the document at `path` until it is `ready` or `failed`; returns its last view.
pub(crate) async fn settled(app: &TestApp, user: &TestUser, path: &str) -> Value {
    eventually(Duration::from_secs(60), "the document settles", || async {
        let response = app.get_as(user, path).await;
        assert_eq!(response.status, 200, "{}", response.text);
        match response.json["status"].as_str() {
            Some("ready" | "failed") => Ok(response.json),
            _ => Err(response.json["status"].clone()),
        }
    })
    .await
}

pub(crate) const GUIDE: &str = "# Installing packages\n\nUse install.packages(\"name\") to install a package \
from CRAN. The library() function loads it.\n\n# Updating\n\nupdate.packages() updates every \
installed package at once.\n\n# Memory\n\nThe garbage collector frees memory automatically; \
gc() reports usage.\n";

#[tokio::test]
async fn a_markdown_document_is_processed_and_its_passages_answer_questions() {
    let k = knowledge(&[]).await;
    let id = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    let document = k.settled(id).await;
    assert_eq!(document["status"], "ready", "{document}");
    assert!(document["chunks_count"].as_i64().unwrap() >= 1);
    assert!(document["tokens_count"].as_i64().unwrap() > 20);
    assert!(document["processed_at"].is_string());
    assert_eq!(document["content_type"], "text/markdown");
    assert_eq!(document["queue_position"], Value::Null);
    assert_eq!(
        k.chunk_ordinals(id).await.len() as i64,
        document["chunks_count"].as_i64().unwrap()
    );

    let hits = k.search("how do I update installed packages?").await;
    assert!(!hits.is_empty());
    assert!(
        hits[0]["text"]
            .as_str()
            .unwrap()
            .contains("update.packages()"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["document_id"], id.to_string());
    assert_eq!(hits[0]["filename"], "guide.md");
    let processed = k.app.events_of_type("documents.document_processed").await;
    assert_eq!(processed[0]["event"]["document_id"], id.to_string());
}

#[tokio::test]
async fn every_format_is_extracted() {
    // Small chunks so each format yields several and headings/pages show in metadata.
    let k = knowledge(&[]).await;
    let aid = avatar(
        &k.app,
        &k.owner,
        k.pid,
        json!({"chunk_size": 64, "chunk_overlap": 8}),
    )
    .await;
    let path = format!("/api/v1/projects/{}/avatars/{aid}/documents", k.pid);
    let html = b"<html><head><style>.x{color:red}</style><script>var secret=1;</script></head>\
        <body><h1>Returns</h1><p>Items can be returned within 30 days of delivery.</p></body></html>"
        .to_vec();
    let csv = b"product;price;stock\nkettle;25;12\ntoaster;40;3\n".to_vec();
    let legacy: Vec<u8> = b"Caf\xe9 d\xe9j\xe0 vu: the menu changes every Tuesday.".to_vec();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("policy.docx", docx(), "Refunds | Within 30 days", "w:t"),
        ("returns.html", html, "returned within 30 days", "secret"),
        (
            "stock.csv",
            csv,
            "product: toaster; price: 40; stock: 3",
            "product;price",
        ),
        ("menu.txt", legacy, "Café déjà vu", "\u{fffd}"),
        (
            "guide.md",
            GUIDE.as_bytes().to_vec(),
            "install.packages",
            "# Installing",
        ),
    ];
    for (filename, bytes, expected, absent) in cases {
        let response = k.app.upload(&k.owner, &path, filename, bytes).await;
        assert_eq!(response.status, 202, "{filename}: {}", response.text);
        let id = Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap();
        let document = settled(&k.app, &k.owner, &format!("{path}/{id}")).await;
        assert_eq!(document["status"], "ready", "{filename}: {document}");
        let text: String = k
            .app
            .context
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT string_agg(text, ' ' ORDER BY ordinal) AS text FROM document_chunks WHERE document_id = $1",
                [id.into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "text")
            .unwrap();
        assert!(text.contains(expected), "{filename}: {text}");
        assert!(!text.contains(absent), "{filename}: {text}");
    }
}

/// A minimal Word document: a heading, a paragraph and a 2×2 table.
fn docx() -> Vec<u8> {
    use std::io::Write;
    let document = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Returns policy</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Customers may return </w:t></w:r><w:r><w:t>unused items.</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Refunds</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Within 30 days</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>Exchanges</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Any time</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
</w:body></w:document>"#;
    let content_types = r#"<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"#;
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buffer);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(content_types.as_bytes()).unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap();
    buffer.into_inner()
}

#[tokio::test]
async fn a_project_processes_at_most_its_share_at_once() {
    // Each embedding call takes 300 ms, so documents overlap unless the cap holds them back.
    let fake = fake_embeddings(0, Duration::from_millis(300)).await;
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__EMBEDDINGS__PROVIDER", "openai"),
            ("APP__EMBEDDINGS__BASE_URL", &fake.url),
            ("APP__DOCUMENTS__MAX_PROCESSING_PER_PROJECT", "1"),
            ("APP__DOCUMENTS__DEFER_SECS", "1"),
        ],
        workers: 3,
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "busy").await;
    let aid = avatar(&app, &owner, pid, json!({})).await;
    let path = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");
    for n in 0..3 {
        let response = app
            .upload(
                &owner,
                &path,
                &format!("{n}.txt"),
                format!("document {n} about kettles").into_bytes(),
            )
            .await;
        assert_eq!(response.status, 202);
    }
    let mut most_at_once = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = app.get_as(&owner, &path).await;
        let statuses: Vec<String> = list.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|doc| doc["status"].as_str().unwrap().to_owned())
            .collect();
        most_at_once = most_at_once.max(
            statuses
                .iter()
                .filter(|status| *status == "processing")
                .count(),
        );
        if statuses.iter().all(|status| status == "ready") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most_at_once, 1);
}

#[tokio::test]
async fn a_real_pdf_keeps_page_numbers_and_answers_a_question() {
    let k = knowledge(&[]).await;
    let bytes = std::fs::read(format!("{FIXTURES}/R-FAQ.pdf")).unwrap();
    let id = k.uploaded("R-FAQ.pdf", bytes).await;
    let document = k.settled(id).await;
    assert_eq!(document["status"], "ready", "{document}");
    assert!(
        document["document_metadata"]["pages"].as_i64().unwrap() >= 50,
        "{document}"
    );
    assert!(document["chunks_count"].as_i64().unwrap() >= 50);
    let pages: Vec<Option<i32>> = k
        .app
        .context
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT page FROM document_chunks WHERE document_id = $1 ORDER BY ordinal",
            [id.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<Option<i32>>("", "page").unwrap())
        .collect();
    assert_eq!(pages.first(), Some(&Some(1)));
    assert!(pages.iter().all(Option::is_some));
    assert!(
        pages.windows(2).all(|pair| pair[0] <= pair[1]),
        "pages in order"
    );

    // The local embedder is lexical: ask with the words the answer uses.
    let hits = k
        .search("Which system does statistical computation and graphics?")
        .await;
    assert!(!hits.is_empty());
    assert!(
        hits.iter().any(|hit| hit["text"]
            .as_str()
            .unwrap()
            .contains("R is a system for statistical")),
        "{hits:#?}"
    );
}

#[tokio::test]
async fn duplicates_oversized_and_unsupported_files_are_refused() {
    let k = knowledge(&[("APP__DOCUMENTS__MAX_UPLOAD_BYTES", "2000")]).await;
    let id = k
        .uploaded("a.txt", b"some plain text for the avatar".to_vec())
        .await;
    let duplicate = k
        .upload("copy.txt", b"some plain text for the avatar".to_vec())
        .await;
    let error = duplicate.error(409, "CONFLICT");
    assert_eq!(error["details"]["existing_id"], id.to_string());

    let big = k.upload("big.txt", vec![b'a'; 5000]).await;
    let error = big.error(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(error["details"]["limit_bytes"], 2000);

    let png = k
        .upload("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())
        .await;
    assert_eq!(png.error(415, "UNSUPPORTED_MEDIA_TYPE")["field"], "file");
    let disguised = k.upload("notes.txt", b"%PDF-1.4\n%binary".to_vec()).await;
    disguised.error(415, "UNSUPPORTED_MEDIA_TYPE");

    let empty = k.upload("empty.txt", Vec::new()).await;
    assert_eq!(empty.error(422, "VALIDATION_ERROR")["field"], "file");
    let no_file = k
        .app
        .send(
            k.app
                .client
                .post(k.app.url(&k.documents_path()))
                .bearer_auth(&k.owner.access_token)
                .multipart(reqwest::multipart::Form::new().text("other", "x")),
        )
        .await;
    assert_eq!(no_file.error(422, "VALIDATION_ERROR")["field"], "file");
    let not_multipart = k
        .app
        .post_as(&k.owner, &k.documents_path(), &json!({"file": "x"}))
        .await;
    not_multipart.error(415, "UNSUPPORTED_MEDIA_TYPE");

    // Only the first upload exists, and only its file is stored.
    let list = k.app.get_as(&k.owner, &k.documents_path()).await;
    assert_eq!(list.json["total"], 1);
    let stored = k
        .app
        .context
        .blobs
        .list(&format!("projects/{}/", k.pid))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[tokio::test]
async fn a_corrupt_pdf_fails_with_a_readable_reason_and_can_be_reprocessed() {
    let k = knowledge(&[]).await;
    let id = k
        .uploaded(
            "broken.pdf",
            b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage".to_vec(),
        )
        .await;
    let document = k.settled(id).await;
    assert_eq!(document["status"], "failed");
    let reason = document["error"].as_str().unwrap();
    assert!(
        reason.contains("damaged") || reason.contains("no text"),
        "{reason}"
    );
    assert_eq!(document["chunks_count"], 0);
    let failed = k.app.events_of_type("documents.document_failed").await;
    assert_eq!(failed[0]["event"]["reason"], reason);

    let again = k
        .app
        .post_as(
            &k.owner,
            &format!("{}/{id}/reprocess", k.documents_path()),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
    assert_eq!(k.settled(id).await["status"], "failed");
}

#[tokio::test]
async fn reprocessing_replaces_chunks_and_deleting_removes_chunks_and_file() {
    let k = knowledge(&[]).await;
    let id = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    let first = k.settled(id).await;
    let count = first["chunks_count"].as_i64().unwrap();
    let reprocess = k
        .app
        .post_as(
            &k.owner,
            &format!("{}/{id}/reprocess", k.documents_path()),
            &json!({}),
        )
        .await;
    assert_eq!(reprocess.status, 202);
    let second = k.settled(id).await;
    assert_eq!(second["status"], "ready");
    assert_eq!(
        k.chunk_ordinals(id).await,
        (0..count as i32).collect::<Vec<_>>()
    );

    let blob_prefix = format!("projects/{}/avatars/{}/documents/{id}/", k.pid, k.aid);
    assert_eq!(
        k.app.context.blobs.list(&blob_prefix).await.unwrap().len(),
        1
    );
    let deleted = k
        .app
        .delete_as(&k.owner, &format!("{}/{id}", k.documents_path()))
        .await;
    assert_eq!(deleted.status, 204);
    k.document(id).await.error(404, "NOT_FOUND");
    assert!(k.chunk_ordinals(id).await.is_empty());
    assert!(
        k.app
            .context
            .blobs
            .list(&blob_prefix)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(k.search("update installed packages").await.is_empty());
    k.app
        .delete_as(&k.owner, &format!("{}/{id}", k.documents_path()))
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn deleting_an_avatar_deletes_its_documents() {
    let k = knowledge(&[]).await;
    let id = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    k.settled(id).await;
    let deleted = k
        .app
        .delete_as(
            &k.owner,
            &format!("/api/v1/projects/{}/avatars/{}", k.pid, k.aid),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let prefix = format!("projects/{}/avatars/{}/", k.pid, k.aid);
    eventually(Duration::from_secs(20), "the file is deleted", || async {
        let left = k.app.context.blobs.list(&prefix).await.unwrap();
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
    assert!(k.chunk_ordinals(id).await.is_empty());
}

#[tokio::test]
async fn another_projects_documents_answer_404() {
    let k = knowledge(&[]).await;
    let id = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    let stranger = k.app.user("stranger").await;
    let their_pid = k.app.project(&stranger, "theirs").await;
    let their_aid = avatar(&k.app, &stranger, their_pid, json!({})).await;
    let theirs = format!("/api/v1/projects/{their_pid}/avatars/{their_aid}/documents");
    let ours = k.documents_path();

    // Addressed through the stranger's own project and avatar: not there.
    k.app
        .get_as(&stranger, &format!("{theirs}/{id}"))
        .await
        .error(404, "NOT_FOUND");
    k.app
        .delete_as(&stranger, &format!("{theirs}/{id}"))
        .await
        .error(404, "NOT_FOUND");
    k.app
        .post_as(&stranger, &format!("{theirs}/{id}/reprocess"), &json!({}))
        .await
        .error(404, "NOT_FOUND");
    // Our avatar under their project: not there either.
    let mixed = format!("/api/v1/projects/{their_pid}/avatars/{}/documents", k.aid);
    k.app
        .get_as(&stranger, &mixed)
        .await
        .error(404, "NOT_FOUND");
    k.app
        .upload(&stranger, &mixed, "x.txt", b"hello there".to_vec())
        .await
        .error(404, "NOT_FOUND");
    // Our project: not a member.
    k.app
        .get_as(&stranger, &format!("{ours}/{id}"))
        .await
        .error(404, "NOT_FOUND");
    k.app
        .post_as(
            &stranger,
            &format!("/api/v1/projects/{}/avatars/{}/search", k.pid, k.aid),
            &json!({"query": "packages"}),
        )
        .await
        .error(404, "NOT_FOUND");
    k.app
        .upload(&stranger, &ours, "x.txt", b"hello there".to_vec())
        .await
        .error(404, "NOT_FOUND");
    // A viewer of our project may read and search but not upload.
    let viewer = k.app.member(k.pid, &k.owner, "viewer").await;
    assert_eq!(
        k.app.get_as(&viewer, &format!("{ours}/{id}")).await.status,
        200
    );
    k.app
        .upload(&viewer, &ours, "x.txt", b"hello there".to_vec())
        .await
        .error(403, "FORBIDDEN");
}

#[tokio::test]
async fn waiting_documents_show_their_place_and_a_project_is_capped() {
    // No workers: everything waits.
    let app = spawn_app_with(AppOptions::default()).await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "queue").await;
    let aid = avatar(&app, &owner, pid, json!({})).await;
    let path = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");
    let mut ids = Vec::new();
    for n in 0..3 {
        let response = app
            .upload(
                &owner,
                &path,
                &format!("{n}.txt"),
                format!("document number {n}").into_bytes(),
            )
            .await;
        ids.push(response.json["id"].as_str().unwrap().to_owned());
    }
    for (index, id) in ids.iter().enumerate() {
        let doc = app.get_as(&owner, &format!("{path}/{id}")).await;
        assert_eq!(doc.json["queue_position"], index as i64 + 1);
    }
    let listed = app.get_as(&owner, &format!("{path}?status=uploaded")).await;
    assert_eq!(listed.json["total"], 3);
    let bad = app.get_as(&owner, &format!("{path}?status=lost")).await;
    assert_eq!(bad.error(422, "VALIDATION_ERROR")["field"], "status");
}

async fn fake_embeddings(fail_request: usize, delay: Duration) -> FakeOpenAi {
    FakeOpenAi::embeddings(Faults {
        fail_request,
        delay,
        hold: None,
    })
    .await
}

#[tokio::test]
async fn a_run_that_dies_half_way_is_retried_and_leaves_exactly_one_set_of_chunks() {
    // The second embedding request fails (no retries inside the client): the first batch's
    // chunks are already stored when the run stops.
    let fake = fake_embeddings(2, Duration::ZERO).await;
    let k = knowledge(&[
        ("APP__EMBEDDINGS__PROVIDER", "openai"),
        ("APP__EMBEDDINGS__BASE_URL", &fake.url),
        ("APP__EMBEDDINGS__MAX_RETRIES", "0"),
        ("APP__DOCUMENTS__EMBED_BATCH_SIZE", "4"),
    ])
    .await;
    let aid = avatar(
        &k.app,
        &k.owner,
        k.pid,
        json!({"chunk_size": 40, "chunk_overlap": 0}),
    )
    .await;
    let path = format!("/api/v1/projects/{}/avatars/{aid}/documents", k.pid);
    let text = (0..40)
        .map(|n| format!("Paragraph {n} talks about topic number {n} in some detail.\n\n"))
        .collect::<String>();
    let response = k
        .app
        .upload(&k.owner, &path, "long.txt", text.into_bytes())
        .await;
    assert_eq!(response.status, 202, "{}", response.text);
    let id = Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap();
    let document = settled(&k.app, &k.owner, &format!("{path}/{id}")).await;
    assert_eq!(document["status"], "ready", "{document}");
    let count = document["chunks_count"].as_i64().unwrap() as i32;
    assert!(count > 8, "enough chunks for several batches: {count}");
    assert_eq!(k.chunk_ordinals(id).await, (0..count).collect::<Vec<_>>());
    // The failed run was real: requests = failed run (2) + the full retry.
    let batches = (count as usize).div_ceil(4);
    assert_eq!(fake.embedding_requests(), 2 + batches);
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_with_that_reason() {
    let fake = fake_embeddings(0, Duration::from_secs(30)).await;
    let k = knowledge(&[
        ("APP__EMBEDDINGS__PROVIDER", "openai"),
        ("APP__EMBEDDINGS__BASE_URL", &fake.url),
        ("APP__EMBEDDINGS__TIMEOUT_SECS", "60"),
        ("APP__DOCUMENTS__PROCESSING_TIMEOUT_SECS", "1"),
        ("APP__DOCUMENTS__PARSE_TIMEOUT_SECS", "1"),
        ("APP__DOCUMENTS__PARSE_CPU_SECS", "1"),
    ])
    .await;
    let id = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    let document = k.settled(id).await;
    assert_eq!(document["status"], "failed");
    assert_eq!(
        document["error"],
        "processing took longer than 1 s and was stopped"
    );
}

#[tokio::test]
async fn a_dimension_change_is_refused_at_start_until_the_reembed_command_ran() {
    use avatar_platform::app::{Application, RunOptions};
    let app = spawn_app_with(AppOptions::default()).await;
    let options = |check: bool| RunOptions {
        http: false,
        workers: Some(0),
        migrate: false,
        handle_signals: false,
        dispatch_events: false,
        startup_checks: check,
    };
    let mut resized = (*app.context.settings).clone();
    resized.embeddings.dimension = 256;

    let refused = Application::build(resized.clone(), options(true)).await;
    let message = format!(
        "{:#}",
        refused.err().expect("a 256-dimension app must not start")
    );
    assert!(
        message.contains("`embeddings.dimension` is 256 but stored chunks have 384"),
        "{message}"
    );

    let maintenance = Application::build(resized.clone(), options(false))
        .await
        .unwrap();
    maintenance
        .service::<DocumentsService>()
        .unwrap()
        .reembed_all(256)
        .await
        .unwrap();
    maintenance.shutdown().await;

    let started = Application::build(resized, options(true)).await;
    assert!(started.is_ok(), "after reembed the new dimension starts");
    started.unwrap().shutdown().await;
    let old = Application::build((*app.context.settings).clone(), options(true)).await;
    assert!(old.is_err(), "and the old one no longer does");
}

#[tokio::test]
async fn switching_to_the_local_model_is_refused_at_start_until_the_chunks_are_embedded_again() {
    use avatar_platform::app::{Application, RunOptions};
    use avatar_platform::core::config::EmbeddingProvider;
    // The HTTP app runs no jobs: each phase's workers are an app of their own.
    let app = spawn_app_with(AppOptions::default()).await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "knowledge").await;
    let aid = avatar(&app, &owner, pid, json!({})).await;
    let k = Knowledge {
        app,
        owner,
        pid,
        aid,
    };
    let options = |check: bool, workers: usize| RunOptions {
        http: false,
        workers: Some(workers),
        migrate: false,
        handle_signals: false,
        dispatch_events: false,
        startup_checks: check,
    };
    // Chunks written by the lexical embedder (config/test.toml), of up to 512 cl100k tokens.
    let long = (0..40)
        .map(|n| {
            format!(
                "Paragraph {n}. Packages are installed from a mirror of CRAN, whose address \
                 the repos option holds; a package built for another version of R may need \
                 to be installed again from its sources, with the compilers that R was built \
                 with, before library() can attach it to the search path.\n\n"
            )
        })
        .collect::<String>();
    let id = k
        .uploaded("guide.md", format!("{GUIDE}\n\n{long}").into_bytes())
        .await;
    let lexical = (*k.app.context.settings).clone();
    let workers = Application::build(lexical, options(true, 1)).await.unwrap();
    assert_eq!(k.settled(id).await["status"], "ready");
    workers.shutdown().await;
    let largest = || async {
        k.app
            .context
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT max(token_count) AS n FROM document_chunks",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i32>("", "n")
            .unwrap()
    };
    assert!(largest().await > 254, "{}", largest().await);
    let mut local = (*k.app.context.settings).clone();
    local.embeddings.provider = EmbeddingProvider::Local;

    let refused = Application::build(local.clone(), options(true, 0)).await;
    let message = format!("{:#}", refused.err().expect("mixed models must not start"));
    assert!(
        message.contains("embedded by `local-lexical-v1`")
            && message.contains("`local:all-MiniLM-L6-v2`")
            && message.contains("documents reembed"),
        "{message}"
    );

    // `documents reembed` (start-up checks off), then workers of the local model.
    let maintenance = Application::build(local.clone(), options(false, 0))
        .await
        .unwrap();
    let queued = maintenance
        .service::<DocumentsService>()
        .unwrap()
        .reembed_all(384)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    maintenance.shutdown().await;
    let workers = Application::build(local, options(true, 1)).await.unwrap();
    // Ready before the workers stop (stopped mid-run, a document waits again).
    assert_eq!(k.settled(id).await["status"], "ready");
    let db = k.app.context.db.clone();
    eventually(
        Duration::from_secs(60),
        "the chunks embedded again",
        || async {
            let models: Vec<(String, i64)> = db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT embedding_model, count(*) AS n FROM document_chunks \
                 GROUP BY embedding_model",
                ))
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (
                        row.try_get("", "embedding_model").unwrap(),
                        row.try_get("", "n").unwrap(),
                    )
                })
                .collect();
            match &models[..] {
                [(model, n)] if model == "local:all-MiniLM-L6-v2" && *n > 0 => Ok(()),
                _ => Err(models),
            }
        },
    )
    .await;
    // Sized in the model's word pieces, within its window (the avatar asks for 512).
    let largest = largest().await;
    assert!((200..=254).contains(&largest), "{largest}");
    workers.shutdown().await;
}

/// The full-text vectors stored for a document's chunks, as text.
async fn stored_text_vectors(k: &Knowledge, document: Uuid) -> String {
    k.app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT string_agg(search_vector::text, ' ') AS v FROM document_chunks \
             WHERE document_id = $1",
            [document.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "v")
        .unwrap()
}

#[tokio::test]
async fn an_avatar_s_language_indexes_its_documents_and_a_change_indexes_them_again() {
    let k = knowledge(&[]).await;
    let avatar_path = format!("/api/v1/projects/{}/avatars/{}", k.pid, k.aid);
    let changed = k
        .app
        .patch_as(
            &k.owner,
            &avatar_path,
            &json!({"rag": {"language": "russian"}}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["rag"]["language"], "russian");
    let text = "# Уход за кошками\n\nКошки любят спать на солнце. Кормите кошку два раза в день \
                свежей едой.\n";
    let id = k.uploaded("pets.md", text.as_bytes().to_vec()).await;
    assert_eq!(k.settled(id).await["status"], "ready");
    // Russian stems: кошками, кошки and кошку are one word.
    let stored = stored_text_vectors(&k, id).await;
    assert!(stored.contains("'кошк'"), "{stored}");
    assert!(!stored.contains("'кошками'"), "{stored}");
    // Its lexical vector left Russian stopwords out (and kept English ones, which are words).
    let lexical = LexicalEmbedder::new(k.app.context.settings.embeddings.dimension).unwrap();
    let (chunk, vector) = stored_vector(&k, id).await;
    let vector = vector.unwrap();
    assert!(cosine(&vector, &lexical.for_language("russian").embed_text(&chunk)) > 0.9999);
    assert!(cosine(&vector, &lexical.embed_text(&chunk)) < 0.999);
    let hits = k.search("Сколько раз кормить кошек?").await;
    assert!(
        hits.first()
            .is_some_and(|hit| hit["text"].as_str().unwrap().contains("Кормите")),
        "{hits:?}"
    );

    // Without stemming now: the job writes every word as it is.
    let changed = k
        .app
        .patch_as(
            &k.owner,
            &avatar_path,
            &json!({"rag": {"language": "simple"}}),
        )
        .await;
    assert_eq!(changed.json["rag"]["language"], "simple");
    eventually(
        Duration::from_secs(30),
        "the chunks indexed again",
        || async {
            let stored = stored_text_vectors(&k, id).await;
            if stored.contains("'кошками'") && !stored.contains("'кошк'") {
                Ok(())
            } else {
                Err(stored)
            }
        },
    )
    .await;
    // The lexical vectors follow: embedded again without Russian stopwords.
    eventually(
        Duration::from_secs(30),
        "the vectors embedded again",
        || async {
            let (chunk, vector) = stored_vector(&k, id).await;
            match vector {
                Some(vector)
                    if cosine(&vector, &lexical.for_language("simple").embed_text(&chunk))
                        > 0.9999 =>
                {
                    Ok(())
                }
                other => Err(other.map(|vector| vector.len())),
            }
        },
    )
    .await;
}

/// The text and vector (if it has one yet) of a one-chunk document's chunk.
async fn stored_vector(k: &Knowledge, document: Uuid) -> (String, Option<Vec<f32>>) {
    let row = k
        .app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT text, embedding::text AS vector FROM document_chunks WHERE document_id = $1",
            [document.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let vector: Option<String> = row.try_get("", "vector").unwrap();
    (
        row.try_get("", "text").unwrap(),
        vector.map(|vector| serde_json::from_str(&vector).unwrap()),
    )
}

/// A document of `sections` short sections on distinct subjects (one chunk each, or so).
fn handbook(sections: usize) -> String {
    (0..sections)
        .map(|n| {
            format!(
                "# Topic {n}\n\nSection {n} explains subject{n}: the subject{n} procedure \
                 starts with step{n} and ends with check{n}.\n\n"
            )
        })
        .collect()
}

async fn index_ready(app: &TestApp, avatar_id: Uuid) -> bool {
    vector_index::is_ready(app.context.db.connection(), AvatarId::from_uuid(avatar_id))
        .await
        .unwrap()
}

async fn wait_for_index(app: &TestApp, avatar_id: Uuid, ready: bool) {
    let awaited = format!("the index of {avatar_id} is ready={ready}");
    eventually(Duration::from_secs(60), &awaited, || async {
        if index_ready(app, avatar_id).await == ready {
            Ok(())
        } else {
            Err(!ready)
        }
    })
    .await;
}

#[tokio::test]
async fn a_large_avatar_gets_its_own_index_searched_like_the_exact_scan_and_dropped_with_it() {
    // "Large" here: more than 5 chunks. The recovery check runs every second.
    let k = knowledge(&[
        ("APP__RETRIEVAL__EXACT_SCAN_MAX_CHUNKS", "5"),
        ("APP__DOCUMENTS__RECOVERY_CRON", "* * * * * *"),
    ])
    .await;
    let small = avatar(
        &k.app,
        &k.owner,
        k.pid,
        json!({"chunk_size": 48, "chunk_overlap": 0}),
    )
    .await;
    let large = avatar(
        &k.app,
        &k.owner,
        k.pid,
        json!({"chunk_size": 48, "chunk_overlap": 0}),
    )
    .await;
    for (aid, sections) in [(small, 2), (large, 40)] {
        let path = format!("/api/v1/projects/{}/avatars/{aid}/documents", k.pid);
        let response = k
            .app
            .upload(
                &k.owner,
                &path,
                "handbook.md",
                handbook(sections).into_bytes(),
            )
            .await;
        assert_eq!(response.status, 202, "{}", response.text);
        let id = response.json["id"].as_str().unwrap();
        let document = settled(&k.app, &k.owner, &format!("{path}/{id}")).await;
        assert_eq!(document["status"], "ready", "{document}");
    }

    wait_for_index(&k.app, large, true).await;
    assert!(
        !index_ready(&k.app, small).await,
        "a small avatar needs no index"
    );
    // Partial: the index holds the large avatar's rows only.
    let definition: String = k
        .app
        .context
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
            [vector_index::index_name(AvatarId::from_uuid(large)).into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "indexdef")
        .unwrap();
    assert!(definition.contains("USING hnsw"), "{definition}");
    assert!(
        definition.contains(&format!("WHERE (avatar_id = '{large}'::uuid)")),
        "{definition}"
    );

    // The index path finds what the exact scan finds.
    let settings = k.app.context.settings.retrieval.clone();
    let exact = RetrievalSettings {
        exact_scan_max_chunks: i64::MAX,
        ..settings.clone()
    };
    let embedding = LexicalEmbedder::new(k.app.context.settings.embeddings.dimension)
        .unwrap()
        .embed(&["how does the subject17 procedure start?".to_owned()])
        .await
        .unwrap()
        .remove(0);
    let request = SearchRequest {
        project_id: ProjectId::from_uuid(k.pid),
        avatar_id: AvatarId::from_uuid(large),
        query: "",
        embedding,
        top_k: 5,
        similarity_threshold: 0.0,
        language: "english",
    };
    let db = &k.app.context.db;
    let no_caches = ExactCaches::disabled();
    let in_database = Retriever::new(db.clone(), settings, &no_caches);
    let (path, indexed) = in_database.vector_candidates(&request, 5).await.unwrap();
    assert_eq!(path, VectorPath::Index);
    let (path, scanned) = Retriever::new(db.clone(), exact.clone(), &no_caches)
        .vector_candidates(&request, 5)
        .await
        .unwrap();
    assert_eq!(path, VectorPath::Exact);
    // And in memory, as small avatars are searched.
    let (path, kept) = Retriever::new(db.clone(), exact, &k.app.context.exact_caches)
        .vector_candidates(&request, 5)
        .await
        .unwrap();
    assert_eq!(path, VectorPath::Memory);
    let ids = |hits: &[(Uuid, f64)]| hits.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(&indexed), ids(&scanned));
    assert_eq!(ids(&kept), ids(&scanned));
    let hits = search_avatar(&k, large, "how does the subject17 procedure start?").await;
    assert!(
        hits[0]["text"].as_str().unwrap().contains("step17"),
        "{hits:?}"
    );

    // A build that died half-way leaves an invalid index: it is not used, and the periodic
    // check has it rebuilt.
    k.app
        .context
        .db
        .execute_unprepared(&format!(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{}'::regclass",
            vector_index::index_name(AvatarId::from_uuid(large))
        ))
        .await
        .unwrap();
    assert!(!index_ready(&k.app, large).await);
    let (path, _) = in_database.vector_candidates(&request, 5).await.unwrap();
    assert_eq!(path, VectorPath::Exact, "an invalid index is never queried");
    wait_for_index(&k.app, large, true).await;

    // Deleting the avatar drops its index.
    let deleted = k
        .app
        .delete_as(
            &k.owner,
            &format!("/api/v1/projects/{}/avatars/{large}", k.pid),
        )
        .await;
    assert_eq!(deleted.status, 204);
    eventually(
        Duration::from_secs(30),
        "not yet: the index stayed",
        || async {
            let exists = k
                .app
                .context
                .db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_class WHERE relname = $1",
                    [vector_index::index_name(AvatarId::from_uuid(large)).into()],
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap();
            if exists == 0 { Ok(()) } else { Err(()) }
        },
    )
    .await;
}

async fn search_avatar(k: &Knowledge, aid: Uuid, query: &str) -> Vec<Value> {
    let response = k
        .app
        .post_as(
            &k.owner,
            &format!("/api/v1/projects/{}/avatars/{aid}/search", k.pid),
            &json!({"query": query}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.json["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_embedding_key_goes_only_with_the_endpoint_configured_beside_it() {
    let deployment = fake_embeddings(0, Duration::ZERO).await;
    let platform = fake_embeddings(0, Duration::ZERO).await;
    let k = knowledge(&[
        ("APP__EMBEDDINGS__PROVIDER", "openai"),
        ("APP__EMBEDDINGS__BASE_URL", &deployment.url),
        ("APP__EMBEDDINGS__API_KEY", "deployment-key"),
    ])
    .await;
    let first = k.uploaded("one.md", GUIDE.as_bytes().to_vec()).await;
    assert_eq!(k.settled(first).await["status"], "ready");
    assert!(
        deployment
            .authorizations()
            .iter()
            .all(|header| header.as_deref() == Some("Bearer deployment-key"))
    );
    // The saas_admin points embeddings elsewhere without a key: the deployment's stays home.
    let admin = k.app.admin().await;
    let patched = k
        .app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"embedding_base_url": platform.url}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    k.app.service::<PlatformConfigService>().invalidate();
    let second = k
        .uploaded("two.md", b"# Kettles\n\nDescale kettles monthly.".to_vec())
        .await;
    assert_eq!(k.settled(second).await["status"], "ready");
    let sent = platform.authorizations();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(Option::is_none), "{sent:?}");
}

#[tokio::test]
async fn an_avatars_vectors_kept_in_memory_follow_its_documents_at_once() {
    let k = knowledge(&[]).await;
    let first = k.uploaded("guide.md", GUIDE.as_bytes().to_vec()).await;
    assert_eq!(k.settled(first).await["status"], "ready");
    let db = &k.app.context.db;
    let caches = &k.app.context.exact_caches;
    eventually(Duration::from_secs(10), "the caches in use", || async {
        if caches.in_use() {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await;
    let retriever = Retriever::new(db.clone(), k.app.context.settings.retrieval.clone(), caches);
    let embedding = LexicalEmbedder::new(k.app.context.settings.embeddings.dimension)
        .unwrap()
        .embed(&["how do I update packages?".to_owned()])
        .await
        .unwrap()
        .remove(0);
    let request = SearchRequest {
        project_id: ProjectId::from_uuid(k.pid),
        avatar_id: AvatarId::from_uuid(k.aid),
        query: "",
        embedding,
        top_k: 5,
        similarity_threshold: 0.0,
        language: "english",
    };
    let candidates = || async {
        let (path, hits) = retriever.vector_candidates(&request, 1000).await.unwrap();
        assert_eq!(path, VectorPath::Memory);
        hits.len()
    };
    let before = candidates().await;
    assert_eq!(
        before,
        usize::try_from(k.settled(first).await["chunks_count"].as_i64().unwrap()).unwrap()
    );

    // A new document's chunks are searched as soon as it is ready...
    let second = k
        .uploaded(
            "more.md",
            format!("{GUIDE}\n\n# Again\n\n{GUIDE}").into_bytes(),
        )
        .await;
    let added = k.settled(second).await["chunks_count"].as_i64().unwrap();
    assert_eq!(candidates().await, before + usize::try_from(added).unwrap());

    // ...and a deleted one's are gone when the deletion answers.
    let deleted = k
        .app
        .delete_as(&k.owner, &format!("{}/{second}", k.documents_path()))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(candidates().await, before);
}
