//! The request path's in-process caches (sessions, project roles, API keys, avatars) across two
//! app instances on one database: a change made through one instance is in force in the other
//! as soon as the call that made it has answered — revoked sessions, removed members, demoted
//! roles, deactivated and demoted users, revoked keys, changed and deleted avatars. Each test first shows that the other
//! instance really serves from its cache (a change made with the invalidation triggers
//! switched off goes unseen), so that what follows tests the cache and not a database read.

use std::time::Duration;

use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::fixtures::{PASSWORD, TestUser};
use crate::helpers::{TestApp, eventually, spawn_app};

/// Two instances of one deployment, both with their caches in use.
async fn two_instances() -> (TestApp, TestApp) {
    let first = spawn_app().await;
    let second = first.another_instance().await;
    for app in [&first, &second] {
        eventually(Duration::from_secs(10), "the caches in use", || async {
            if app.context.exact_caches.in_use() {
                Ok(())
            } else {
                Err("not yet")
            }
        })
        .await;
    }
    (first, second)
}

/// Runs `sql` with `table`'s triggers off, so no cache hears of it.
async fn unannounced(app: &TestApp, table: &str, sql: &str) {
    let db = &app.context.db;
    db.execute_unprepared(&format!(
        "BEGIN; ALTER TABLE {table} DISABLE TRIGGER USER; {sql}; \
         ALTER TABLE {table} ENABLE TRIGGER USER; COMMIT;"
    ))
    .await
    .expect("the unannounced change");
}

#[tokio::test]
async fn a_session_ended_in_one_instance_is_refused_at_once_by_the_other() {
    let (first, second) = two_instances().await;
    let user = first.user("session").await;
    assert_eq!(second.get_as(&user, "/api/v1/auth/me").await.status, 200);

    // The second instance serves the session from its cache: an unannounced revocation is
    // not seen there...
    let family = format!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = '{}'",
        user.id
    );
    unannounced(&first, "refresh_tokens", &family).await;
    assert_eq!(second.get_as(&user, "/api/v1/auth/me").await.status, 200);
    unannounced(
        &first,
        "refresh_tokens",
        &family.replace("revoked_at = now()", "revoked_at = NULL"),
    )
    .await;

    // ...while a logout through the first is in force in the second when it answers.
    let logout = first
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&user),
            Some(&json!({"refresh_token": user.refresh_token})),
        )
        .await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    second
        .get_as(&user, "/api/v1/auth/me")
        .await
        .error(401, "INVALID_TOKEN");
    first
        .get_as(&user, "/api/v1/auth/me")
        .await
        .error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_in_every_instance() {
    let (first, second) = two_instances().await;
    let user = first.user("password").await;
    let other_session = first.logged_in(user.id, user.email.clone()).await;
    assert_eq!(
        second
            .get_as(&other_session, "/api/v1/auth/me")
            .await
            .status,
        200
    );
    let changed = first
        .post_as(
            &user,
            "/api/v1/auth/change-password",
            &json!({"current_password": PASSWORD, "new_password": "another battery staple"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text);
    second
        .get_as(&other_session, "/api/v1/auth/me")
        .await
        .error(401, "INVALID_TOKEN");
    // The session that changed it goes on.
    assert_eq!(second.get_as(&user, "/api/v1/auth/me").await.status, 200);
}

#[tokio::test]
async fn a_deactivated_or_demoted_user_is_refused_at_once_by_the_other_instance() {
    let (first, second) = two_instances().await;
    let admin = first.admin().await;
    let colleague = first.admin().await;
    let user = first.user("deactivated").await;
    assert_eq!(second.get_as(&user, "/api/v1/auth/me").await.status, 200);
    assert_eq!(
        second
            .get_as(&colleague, "/api/v1/admin/users")
            .await
            .status,
        200
    );

    unannounced(
        &first,
        "users",
        &format!(
            "UPDATE users SET is_active = false WHERE id = '{}'",
            user.id
        ),
    )
    .await;
    assert_eq!(second.get_as(&user, "/api/v1/auth/me").await.status, 200);
    unannounced(
        &first,
        "users",
        &format!("UPDATE users SET is_active = true WHERE id = '{}'", user.id),
    )
    .await;

    let deactivated = first
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", user.id),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.text);
    second
        .get_as(&user, "/api/v1/auth/me")
        .await
        .error(401, "INVALID_TOKEN");

    let demoted = first
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", colleague.id),
            &json!({"role": "user"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    second
        .get_as(&colleague, "/api/v1/admin/users")
        .await
        .error(403, "FORBIDDEN");
}

/// `user`'s status for the project's secrets (managers and owners only) through `app`.
async fn secrets_status(app: &TestApp, user: &TestUser, project: uuid::Uuid) -> u16 {
    app.get_as(user, &format!("/api/v1/projects/{project}/secrets"))
        .await
        .status
}

#[tokio::test]
async fn a_removed_member_or_demoted_role_is_in_force_at_once_in_the_other_instance() {
    let (first, second) = two_instances().await;
    let owner = first.user("owner").await;
    let project = first.project(&owner, "cached roles").await;
    let manager = first.member(project, &owner, "manager").await;
    let leaving = first.member(project, &owner, "viewer").await;
    assert_eq!(secrets_status(&second, &manager, project).await, 200);
    let avatars = format!("/api/v1/projects/{project}/avatars");
    assert_eq!(second.get_as(&leaving, &avatars).await.status, 200);

    unannounced(
        &first,
        "project_members",
        &format!(
            "UPDATE project_members SET role = 'viewer' WHERE user_id = '{}'",
            manager.id
        ),
    )
    .await;
    assert_eq!(secrets_status(&second, &manager, project).await, 200);
    unannounced(
        &first,
        "project_members",
        &format!(
            "UPDATE project_members SET role = 'manager' WHERE user_id = '{}'",
            manager.id
        ),
    )
    .await;

    let demoted = first
        .patch_as(
            &owner,
            &format!("/api/v1/projects/{project}/members/{}", manager.id),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    second
        .get_as(&manager, &format!("/api/v1/projects/{project}/secrets"))
        .await
        .error(403, "FORBIDDEN");

    let removed = first
        .delete_as(
            &owner,
            &format!("/api/v1/projects/{project}/members/{}", leaving.id),
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    second
        .get_as(&leaving, &avatars)
        .await
        .error(404, "NOT_FOUND");

    // A member added through the first is one in the second at once, though the second
    // knew the user as an outsider.
    let newcomer = first.user("newcomer").await;
    second
        .get_as(&newcomer, &avatars)
        .await
        .error(404, "NOT_FOUND");
    let added = first
        .post_as(
            &owner,
            &format!("/api/v1/projects/{project}/members"),
            &json!({"email": newcomer.email, "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(second.get_as(&newcomer, &avatars).await.status, 200);

    // A deleted project answers 404 in the second at once.
    let deleted = first
        .delete_as(&owner, &format!("/api/v1/projects/{project}"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    second
        .get_as(&owner, &avatars)
        .await
        .error(404, "NOT_FOUND");
}

/// `key`'s status at `/public/api-key` on `app`.
async fn key_status(app: &TestApp, key: &str) -> u16 {
    app.send(
        app.client
            .get(app.url("/api/v1/public/api-key"))
            .header("X-Api-Key", key),
    )
    .await
    .status
}

#[tokio::test]
async fn a_revoked_api_key_or_deleted_project_is_refused_at_once_by_the_other_instance() {
    let (first, second) = two_instances().await;
    let owner = first.user("keys").await;
    let mut keys = Vec::new();
    let mut projects = Vec::new();
    for name in ["revoked", "deleted"] {
        let pid = first.project(&owner, name).await;
        let created = first
            .post_as(
                &owner,
                &format!("/api/v1/projects/{pid}/api-keys"),
                &json!({"name": name, "scopes": ["chat"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        keys.push((
            created.json["key"].as_str().unwrap().to_owned(),
            created.json["id"].as_str().unwrap().to_owned(),
        ));
        projects.push(pid);
        assert_eq!(key_status(&second, &keys.last().unwrap().0).await, 200);
    }
    let (revoked, revoked_id) = &keys[0];

    // The second instance serves the key from its cache: an unannounced revocation is not
    // seen there...
    let revoke =
        format!("UPDATE project_api_keys SET revoked_at = now() WHERE id = '{revoked_id}'");
    unannounced(&first, "project_api_keys", &revoke).await;
    assert_eq!(key_status(&second, revoked).await, 200);
    unannounced(
        &first,
        "project_api_keys",
        &revoke.replace("revoked_at = now()", "revoked_at = NULL"),
    )
    .await;

    // ...while a revocation through the first is in force in the second when it answers,
    let deleted = first
        .delete_as(
            &owner,
            &format!("/api/v1/projects/{}/api-keys/{revoked_id}", projects[0]),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(key_status(&second, revoked).await, 401);
    // and so is the deletion of a key's project.
    let (kept, _) = &keys[1];
    let deleted = first
        .delete_as(&owner, &format!("/api/v1/projects/{}", projects[1]))
        .await;
    assert!(deleted.status < 300, "{}", deleted.text);
    assert_eq!(key_status(&second, kept).await, 401);
    assert_eq!(key_status(&first, kept).await, 401);
}

#[tokio::test]
async fn an_avatar_changed_or_deleted_in_one_instance_is_seen_at_once_by_the_other() {
    let (first, second) = two_instances().await;
    let owner = first.user("avatars").await;
    let pid = first.project(&owner, "avatars").await;
    let aid = first.avatar(&owner, pid, "Before").await;
    let path = format!("/api/v1/projects/{pid}/avatars/{aid}");
    let read = second.get_as(&owner, &path).await;
    assert_eq!(read.json["name"], "Before", "{}", read.text);

    // The second instance serves the avatar from its cache: an unannounced rename is not
    // seen there...
    let rename = format!("UPDATE avatars SET name = 'Unannounced' WHERE id = '{aid}'");
    unannounced(&first, "avatars", &rename).await;
    assert_eq!(second.get_as(&owner, &path).await.json["name"], "Before");

    // ...while an update through the first is in force in the second when it answers,
    let updated = first
        .call(
            Method::PATCH,
            &path,
            Some(&owner),
            Some(&json!({"name": "After", "status": "disabled"})),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let read = second.get_as(&owner, &path).await;
    assert_eq!(
        (&read.json["name"], &read.json["status"]),
        (&json!("After"), &json!("disabled")),
        "{}",
        read.text
    );
    // and so is a deletion.
    assert_eq!(first.delete_as(&owner, &path).await.status, 204);
    second.get_as(&owner, &path).await.error(404, "NOT_FOUND");
}
