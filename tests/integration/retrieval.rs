//! The full-text list's bound: a question whose words match many of an avatar's chunks ranks
//! at most `retrieval.text_rank_max_rows` of them, the chunks holding two or more of its words
//! first, so its best matches survive the bound wherever they are stored.

use avatar_platform::core::cache::ExactCaches;
use avatar_platform::core::config::RetrievalSettings;
use avatar_platform::core::ids::{AvatarId, ProjectId};
use avatar_platform::modules::documents::testkit::retrieval::{Retriever, SearchRequest};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

/// An avatar's ready document of `texts`, one chunk each, stored in this order.
async fn avatar_with_chunks(app: &TestApp, texts: &[&str]) -> (ProjectId, AvatarId, Vec<Uuid>) {
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "library").await;
    let aid = app.avatar(&owner, pid, "Librarian").await;
    let db = &app.context.db;
    let document = Uuid::now_v7();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO documents (id, project_id, avatar_id, filename, content_type, format, \
         size_bytes, sha256, blob_key, status, chunks_count, created_at, updated_at) \
         VALUES ($1, $2, $3, 'shelf.txt', 'text/plain', 'text', 0, $1::text, 'none', 'ready', $4, \
                 now(), now())",
        [
            document.into(),
            pid.into(),
            aid.into(),
            i32::try_from(texts.len()).unwrap().into(),
        ],
    ))
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (ordinal, text) in texts.iter().enumerate() {
        let id = Uuid::now_v7();
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO document_chunks (id, document_id, project_id, avatar_id, ordinal, text, \
             token_count, embedding_model, created_at, search_vector) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, 'none', now(), to_tsvector('english', $6))",
            [
                id.into(),
                document.into(),
                pid.into(),
                aid.into(),
                i32::try_from(ordinal).unwrap().into(),
                (*text).into(),
            ],
        ))
        .await
        .unwrap();
        ids.push(id);
    }
    (ProjectId::from_uuid(pid), AvatarId::from_uuid(aid), ids)
}

/// The unbounded list, as it was ranked before the bound: every match of any word.
async fn every_match_ranked(
    app: &TestApp,
    avatar_id: AvatarId,
    question: &str,
    limit: i64,
) -> Vec<Uuid> {
    app.context
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.id FROM document_chunks c, \
             LATERAL (SELECT replace(plainto_tsquery('english', $1)::text, '&', '|')::tsquery \
                      AS q) query \
             WHERE c.avatar_id = $2 AND c.search_vector @@ query.q \
             ORDER BY ts_rank(c.search_vector, query.q) DESC, c.id LIMIT $3",
            [question.into(), avatar_id.into(), limit.into()],
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<Uuid>("", "id").unwrap())
        .collect()
}

fn retriever(app: &TestApp, text_rank_max_rows: i64) -> Retriever {
    let settings = RetrievalSettings {
        text_rank_max_rows,
        ..app.context.settings.retrieval.clone()
    };
    Retriever::new(app.context.db.clone(), settings, &ExactCaches::disabled())
}

fn request(project_id: ProjectId, avatar_id: AvatarId, query: &str) -> SearchRequest<'_> {
    SearchRequest {
        project_id,
        avatar_id,
        query,
        embedding: Vec::new(),
        top_k: 5,
        similarity_threshold: 0.0,
        language: "english",
    }
}

#[tokio::test]
async fn the_full_text_list_ranks_a_bounded_number_of_matches_the_best_first() {
    let app = spawn_app().await;
    // Thirty chunks holding one of the question's words, stored first; then the two that
    // hold two and three of them; then one about something else.
    let mut texts: Vec<String> = (0..30)
        .map(|index| format!("The harbour chart number {index} is kept in the archive."))
        .collect();
    texts.push("Every lighthouse keeper reads the harbour chart at night.".to_owned());
    texts.push("A lighthouse keeper logs each tide.".to_owned());
    texts.push("Bread is baked at dawn.".to_owned());
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (pid, aid, ids) = avatar_with_chunks(&app, &texts).await;
    let (three_words, two_words) = (ids[30], ids[31]);
    let question = "Where does the lighthouse keeper find the chart?";

    let unbounded = every_match_ranked(&app, aid, question, 100).await;
    assert_eq!(
        unbounded.len(),
        32,
        "every chunk but the baker's matches a word"
    );
    assert_eq!(unbounded[..2], [three_words, two_words]);

    // Ranking at most 10 of the 32 matches: the multi-word ones, stored last, come first;
    // the list holds no more than the bound.
    let bounded = retriever(&app, 10)
        .text_candidates(&request(pid, aid, question), 20)
        .await
        .unwrap();
    assert_eq!(bounded.len(), 10, "{bounded:?}");
    assert_eq!(bounded[..2], unbounded[..2]);
    assert!(bounded.iter().all(|id| unbounded.contains(id)));

    // Under the bound, the list is the unbounded one, order included.
    let within = retriever(&app, 1000)
        .text_candidates(&request(pid, aid, question), 20)
        .await
        .unwrap();
    assert_eq!(within, unbounded[..20]);

    // A single word, stop words only, and quotes or backslashes in the question.
    let single = retriever(&app, 10)
        .text_candidates(&request(pid, aid, "lighthouse"), 20)
        .await
        .unwrap();
    assert_eq!(single.len(), 2);
    for odd in ["the of and", "O'Brien's \\ 'chart' \"keeper\" & | ! (tide)"] {
        let found = retriever(&app, 1000)
            .text_candidates(&request(pid, aid, odd), 20)
            .await
            .unwrap();
        let expected = every_match_ranked(&app, aid, odd, 20).await;
        assert_eq!(found, expected, "{odd}");
    }
}
