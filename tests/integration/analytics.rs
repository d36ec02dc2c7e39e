//! The audit log over HTTP: one entry per action of every module with its actor and no secret
//! values, retried deliveries written once, filters and keyset paging, who may read it, an
//! erased end user scrubbed from it, and client IPs dropped after their retention.

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use avatar_platform::core::clock::ManualClock;
use avatar_platform::modules::analytics::AnalyticsService;

use crate::chat::chat_app_with;
use crate::fake_openai::Reply;
use crate::fixtures::{PASSWORD, TestUser};
use crate::helpers::{AppOptions, TestApp, eventually, spawn_app, spawn_app_with};

const SECRET_VALUE: &str = "sk-audit-must-never-show-this";

async fn entries(app: &TestApp, user: &TestUser, path: &str) -> Vec<Value> {
    let response = app.get_as(user, path).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(!response.text.contains(SECRET_VALUE), "{}", response.text);
    response.json["items"].as_array().unwrap().clone()
}

/// Waits until the project's log holds `count` entries.
async fn settled(app: &TestApp, user: &TestUser, pid: Uuid, count: usize) -> Vec<Value> {
    let path = format!("/api/v1/projects/{pid}/audit-log?limit=200");
    eventually(Duration::from_secs(20), "the audit entries", || async {
        let found = entries(app, user, &path).await;
        if found.len() >= count {
            Ok(found)
        } else {
            Err(found
                .iter()
                .map(|entry| entry["action"].clone())
                .collect::<Vec<_>>())
        }
    })
    .await
}

#[tokio::test]
async fn each_action_leaves_one_entry_with_its_actor_and_no_secret_value() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "audited").await;
    let secret = app
        .put_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/LLM_API_KEY"),
            &json!({"value": SECRET_VALUE}),
        )
        .await;
    assert_eq!(secret.status, 204, "{}", secret.text);
    let avatar = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "a", "system_prompt": "You help."}),
        )
        .await;
    let aid = avatar.json["id"].as_str().unwrap().to_owned();
    let updated = app
        .patch_as(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars/{aid}"),
            &json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let key = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "site"}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let plaintext_key = key.json["key"].as_str().unwrap().to_owned();
    let manager = app.member(pid, &owner, "manager").await;

    let expected = [
        "project.created",
        "member.added",
        "subscription.started",
        "secret.set",
        "avatar.created",
        "avatar.updated",
        "api_key.created",
        "member.added",
    ];
    let found = settled(&app, &owner, pid, expected.len()).await;
    let mut actions: Vec<&str> = found
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    assert_eq!(actions, wanted, "exactly one entry per action");
    let text = serde_json::to_string(&found).unwrap();
    assert!(!text.contains(&plaintext_key), "no API key in the log");

    let renamed = found
        .iter()
        .find(|entry| entry["action"] == "avatar.updated")
        .unwrap();
    assert_eq!(renamed["actor_kind"], "user");
    assert_eq!(renamed["actor_user_id"], owner.id.to_string());
    assert_eq!(renamed["entity_type"], "avatar");
    assert_eq!(renamed["entity_id"], aid);
    assert_eq!(renamed["details"]["fields"], json!(["name"]));
    assert!(renamed["request_id"].is_string());
    let secret_entry = found
        .iter()
        .find(|entry| entry["action"] == "secret.set")
        .unwrap();
    assert_eq!(secret_entry["entity_id"], "LLM_API_KEY");

    // Delivered again (a retry after a lost acknowledgement): nothing is written twice.
    app.context
        .db
        .execute_unprepared(
            "UPDATE event_deliveries SET status = 'pending', locked_until = NULL \
             WHERE subscriber = 'analytics.audit'",
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the redelivery", || async {
        let pending = app
            .context
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM event_deliveries \
                 WHERE subscriber = 'analytics.audit' AND status <> 'delivered'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if pending == 0 { Ok(()) } else { Err(pending) }
    })
    .await;
    let again = entries(
        &app,
        &owner,
        &format!("/api/v1/projects/{pid}/audit-log?limit=200"),
    )
    .await;
    assert_eq!(again.len(), expected.len());

    // Filters.
    let by_action = entries(
        &app,
        &owner,
        &format!("/api/v1/projects/{pid}/audit-log?action=member.added"),
    )
    .await;
    assert_eq!(by_action.len(), 2);
    let by_entity = entries(
        &app,
        &owner,
        &format!("/api/v1/projects/{pid}/audit-log?entity_type=avatar&entity_id={aid}"),
    )
    .await;
    assert_eq!(by_entity.len(), 2);
    let by_actor = entries(
        &app,
        &manager,
        &format!(
            "/api/v1/projects/{pid}/audit-log?actor_id={}",
            Uuid::now_v7()
        ),
    )
    .await;
    assert!(by_actor.is_empty());

    // Keyset pages of 3 walk every entry once, newest first.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/projects/{pid}/audit-log?limit=3");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get_as(&owner, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for entry in page.json["items"].as_array().unwrap() {
            assert!(seen.insert(entry["id"].as_str().unwrap().to_owned()));
        }
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len());
    // The list envelope: `total` counts every match; `offset` pages without a cursor.
    let offset = app
        .get_as(
            &owner,
            &format!("/api/v1/projects/{pid}/audit-log?limit=3&offset=6"),
        )
        .await;
    assert_eq!(offset.json["total"], expected.len());
    assert_eq!(offset.json["offset"], 6);
    assert_eq!(
        offset.json["items"].as_array().unwrap().len(),
        expected.len() - 6
    );
    let bad = app
        .get_as(
            &owner,
            &format!("/api/v1/projects/{pid}/audit-log?cursor=nonsense"),
        )
        .await;
    assert_eq!(bad.error(422, "VALIDATION_ERROR")["field"], "cursor");
}

#[tokio::test]
async fn managers_read_the_project_log_and_the_saas_admin_reads_everything() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "watched").await;
    let viewer = app.member(pid, &owner, "viewer").await;
    let path = format!("/api/v1/projects/{pid}/audit-log");
    app.get_as(&viewer, &path).await.error(403, "FORBIDDEN");
    let stranger = app.user("stranger").await;
    app.get_as(&stranger, &path).await.error(404, "NOT_FOUND");
    app.get_as(&owner, "/api/v1/admin/audit-log")
        .await
        .error(403, "FORBIDDEN");

    // Platform-level actions are in the admin's log, not in any project's.
    let admin = app.admin().await;
    let changed = app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"registration_open": true}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let all = eventually(Duration::from_secs(20), "the platform entry", || async {
        let found = entries(&app, &admin, "/api/v1/admin/audit-log?limit=200").await;
        if found
            .iter()
            .any(|entry| entry["action"] == "platform_config.changed")
        {
            Ok(found)
        } else {
            Err(found.len())
        }
    })
    .await;
    let platform = all
        .iter()
        .find(|entry| entry["action"] == "platform_config.changed")
        .unwrap();
    assert!(platform["project_id"].is_null());
    assert_eq!(platform["actor_user_id"], admin.id.to_string());
    let mine = entries(
        &app,
        &admin,
        &format!("/api/v1/admin/audit-log?project_id={pid}&limit=200"),
    )
    .await;
    assert!(
        mine.iter()
            .all(|entry| entry["project_id"] == pid.to_string())
    );
    assert!(!mine.is_empty());
}

/// The admin's entries about `entity` (`type/id`), once there are `count` of them.
async fn about(app: &TestApp, admin: &TestUser, entity: &str, count: usize) -> Vec<Value> {
    let (entity_type, entity_id) = entity.split_once('/').unwrap();
    let path = format!(
        "/api/v1/admin/audit-log?entity_type={entity_type}&entity_id={entity_id}&limit=200"
    );
    eventually(Duration::from_secs(20), "the entries", || async {
        let found = entries(app, admin, &path).await;
        if found.len() >= count {
            Ok(found)
        } else {
            Err(found.len())
        }
    })
    .await
}

fn actions(found: &[Value]) -> Vec<&str> {
    let mut actions: Vec<&str> = found
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    actions
}

#[tokio::test]
async fn accounts_documents_conversations_and_end_users_leave_one_entry_each() {
    let chat = chat_app_with(
        &[("APP__OUTBOUND__ALLOWED_HOSTS", "127.0.0.1")],
        Reply::answer("Yes.", (5, 5)),
        true,
    )
    .await;
    let (app, owner, pid) = (&chat.app, &chat.owner, chat.pid);
    let admin = app.admin().await;

    // Accounts: registered, logged in, password changed; the password never shows.
    const NEW_PASSWORD: &str = "a new long password for audit";
    let changed = app
        .post_as(
            owner,
            "/api/v1/auth/change-password",
            &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    let account = about(app, &admin, &format!("user/{}", owner.id), 3).await;
    assert_eq!(
        actions(&account),
        ["user.logged_in", "user.password_changed", "user.registered"]
    );
    let text = serde_json::to_string(&account).unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains(NEW_PASSWORD),
        "{text}"
    );
    assert!(account.iter().all(|entry| entry["project_id"].is_null()));

    // A document: uploaded and processed (by the system), then deleted by the owner.
    let document = chat.document.to_string();
    let deleted = app
        .delete_as(
            owner,
            &format!(
                "/api/v1/projects/{pid}/avatars/{}/documents/{document}",
                chat.aid
            ),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let life = about(app, &admin, &format!("document/{document}"), 3).await;
    assert_eq!(
        actions(&life),
        [
            "document.deleted",
            "document.processed",
            "document.uploaded"
        ]
    );
    let processed = life
        .iter()
        .find(|entry| entry["action"] == "document.processed")
        .unwrap();
    assert_eq!(processed["actor_kind"], "system");
    let removed = life
        .iter()
        .find(|entry| entry["action"] == "document.deleted")
        .unwrap();
    assert_eq!(removed["actor_user_id"], owner.id.to_string());

    // An end user through the public API: created, their conversation started, blocked,
    // unblocked and erased — one entry each, by the key, then by the owner.
    let key = chat.api_key().await;
    let asked = chat
        .public_chat(
            &key,
            chat.aid,
            &json!({"end_user": {"external_id": "ada-9", "name": "Ada"}, "message": "Hi?"}),
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    let end_user = asked.json["end_user"]["id"].as_str().unwrap().to_owned();
    let conversation = asked.json["conversation_id"].as_str().unwrap().to_owned();
    let started = about(app, &admin, &format!("conversation/{conversation}"), 1).await;
    assert_eq!(actions(&started), ["conversation.started"]);
    assert_eq!(started[0]["actor_kind"], "api_key");
    assert_eq!(started[0]["details"]["end_user_id"], end_user);
    for step in ["block", "unblock"] {
        let response = app
            .post_as(
                owner,
                &format!("/api/v1/projects/{pid}/end-users/{end_user}/{step}"),
                &json!({}),
            )
            .await;
        assert!(response.status < 300, "{step}: {}", response.text);
    }
    // A later channel may put a name in an event's details; erasure takes it out of the log.
    app.context
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO audit_log (id, project_id, actor_kind, action, entity_type, entity_id, \
                 details, ip, occurred_at) \
             VALUES ($1, $2, 'anonymous', 'end_user.renamed', 'end_user', $3, \
                 jsonb_build_object('name', 'Ada Lovelace', 'end_user_id', $3), '203.0.113.9', \
                 now())",
            [Uuid::now_v7().into(), pid.into(), end_user.clone().into()],
        ))
        .await
        .unwrap();
    let erased = app
        .delete_as(
            owner,
            &format!("/api/v1/projects/{pid}/end-users/{end_user}"),
        )
        .await;
    assert!(erased.status < 300, "{}", erased.text);
    let person = about(app, &admin, &format!("end_user/{end_user}"), 5).await;
    assert_eq!(
        actions(&person),
        [
            "end_user.blocked",
            "end_user.created",
            "end_user.deleted",
            "end_user.renamed",
            "end_user.unblocked"
        ]
    );
    let renamed = eventually(Duration::from_secs(20), "the erasure's scrub", || async {
        let found = about(app, &admin, &format!("end_user/{end_user}"), 5).await;
        let renamed = found
            .into_iter()
            .find(|entry| entry["action"] == "end_user.renamed")
            .unwrap();
        if renamed["details"].get("name").is_none() {
            Ok(renamed)
        } else {
            Err(renamed)
        }
    })
    .await;
    assert_eq!(renamed["details"]["end_user_id"], end_user, "the id stays");
    assert!(renamed["ip"].is_null());
}

#[tokio::test]
async fn client_ips_are_dropped_after_their_retention_and_entries_kept() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "kept").await;
    let before = settled(&app, &owner, pid, 3).await;
    let by_people = before
        .iter()
        .filter(|entry| entry["actor_kind"] == "user")
        .count();
    assert_eq!(by_people, 2, "{before:?}");
    assert!(
        before
            .iter()
            .all(|entry| entry["actor_kind"] != "user" || entry["ip"] == "127.0.0.1"),
        "{before:?}"
    );
    let analytics = app.service::<AnalyticsService>();

    // Within the 90 days: nothing changes.
    clock.advance(chrono::Duration::days(89));
    assert_eq!(analytics.maintain(0).await.unwrap().ips_dropped, 0);
    clock.advance(chrono::Duration::days(2));
    let done = analytics.maintain(0).await.unwrap();
    assert!(done.ips_dropped >= 2, "{done:?}");
    assert_eq!(
        done.entries_deleted, 0,
        "entries are kept forever by default"
    );
    let owner = app.logged_in(owner.id, owner.email.clone()).await;
    let after = entries(&app, &owner, &format!("/api/v1/projects/{pid}/audit-log")).await;
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|entry| entry["ip"].is_null()), "{after:?}");
}
