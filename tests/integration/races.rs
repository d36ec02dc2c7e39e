//! Lifecycle races, each forced into its worst order by holding one statement back inside the
//! database until the other side has finished (a trigger of the test's own database), so the
//! outcome does not depend on timing.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use uuid::Uuid;

use crate::chat::chat_app;
use crate::fake_openai::Reply;
use crate::helpers::eventually;

const ANSWER: &str = "Plans renew monthly.";

/// An end user erased while their question is starting a conversation: the request had found
/// them, the conversation's insert is held until the erasure is committed and every subscriber
/// has handled `EndUserDeleted`, then goes on. Nothing of theirs may remain, and the held
/// question answers 404 with its token reservation given back.
#[tokio::test]
async fn an_end_user_erased_while_their_question_starts_a_conversation_leaves_nothing_behind() {
    let chat = chat_app(&[], Reply::answer(ANSWER, (5, 5)), true).await;
    let key = chat.api_key().await;
    let first = chat.public_answer(&key, "ada", "Hi?").await;
    let end_user: Uuid = first["end_user"]["id"].as_str().unwrap().parse().unwrap();

    // The next conversation of this end user waits, inside its INSERT, until they are erased
    // and no delivery of the erasure is pending (at most 20 s).
    chat.app
        .context
        .db
        .execute_unprepared(&format!(
            r#"
CREATE FUNCTION hold_until_erased() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE waited integer := 0;
BEGIN
    WHILE waited < 400 AND (
        EXISTS (SELECT 1 FROM end_users WHERE id = NEW.end_user_id)
        OR EXISTS (SELECT 1 FROM event_deliveries d JOIN event_outbox o ON o.id = d.event_id
                    WHERE o.event_type = 'end_users.end_user_deleted' AND d.status = 'pending')
    ) LOOP
        PERFORM pg_sleep(0.05);
        waited := waited + 1;
    END LOOP;
    RETURN NEW;
END $$;
CREATE TRIGGER hold_until_erased BEFORE INSERT ON conversations FOR EACH ROW
    WHEN (NEW.end_user_id = '{end_user}') EXECUTE FUNCTION hold_until_erased();
"#
        ))
        .await
        .unwrap();

    let asking = {
        let chat_key = key.clone();
        let client = chat.app.client.clone();
        let url = chat
            .app
            .url(&format!("/api/v1/public/avatars/{}/chat", chat.aid));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("X-Api-Key", chat_key)
                .json(&json!({"end_user": {"external_id": "ada"}, "message": "Again?"}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        })
    };
    // The question has found its end user and is held in the conversation's insert.
    eventually(
        Duration::from_secs(20),
        "the question is held in the conversation's insert",
        || async {
            let held = chat
                .app
                .context
                .db
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event = 'PgSleep'",
                ))
                .await
                .map_err(|error| error.to_string())?
                .and_then(|row| row.try_get::<i64>("", "n").ok())
                .unwrap_or(0);
            if held > 0 {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;

    let erased = chat
        .app
        .delete_as(
            &chat.owner,
            &format!("/api/v1/projects/{}/end-users/{end_user}", chat.pid),
        )
        .await;
    assert_eq!(erased.status, 204, "{}", erased.text);

    let (status, body) = asking.await.unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    assert_eq!(
        chat.number(
            "SELECT count(*) AS n FROM conversations WHERE end_user_id = $1",
            end_user
        )
        .await,
        0,
        "a conversation of the erased end user remained"
    );
    assert_eq!(
        chat.number(
            "SELECT count(*) AS n FROM messages WHERE project_id = $1",
            chat.pid
        )
        .await,
        0,
        "a message of the erased end user remained"
    );
    assert_eq!(
        chat.number(
            "SELECT count(*) AS n FROM end_users WHERE project_id = $1",
            chat.pid
        )
        .await,
        0
    );
    assert_eq!(
        chat.still_reserved().await,
        0,
        "the held question's tokens are still reserved"
    );
    // Only the first question reached the model.
    assert_eq!(chat.llm.requests().len(), 1);
}
