//! Projects, members, secrets and API keys over HTTP, with the role matrix and the tenant
//! boundary: another project's ids answer 404.

use avatar_platform::core::clock::ManualClock;
use avatar_platform::core::ids::ProjectId;
use avatar_platform::modules::projects::ProjectsService;
use reqwest::Method;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_owner_creates_lists_reads_updates_and_deletes_a_project() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let created = app
        .post_as(
            &owner,
            "/api/v1/projects",
            &json!({"name": "  Acme  ", "description": "bots"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["name"], "Acme");
    assert_eq!(created.json["plan"], "free");
    assert_eq!(created.json["role"], "owner");
    let pid = created.json["id"].as_str().unwrap().to_owned();

    let list = app.get_as(&owner, "/api/v1/projects").await;
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["items"][0]["id"], pid.as_str());

    let updated = app
        .patch_as(
            &owner,
            &format!("/api/v1/projects/{pid}"),
            &json!({"name": "Acme 2", "description": null}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["name"], "Acme 2");
    assert_eq!(updated.json["description"], Value::Null);

    let members = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/members"))
        .await;
    assert_eq!(members.json["items"][0]["email"], owner.email.as_str());
    assert_eq!(members.json["items"][0]["role"], "owner");

    assert_eq!(
        app.delete_as(&owner, &format!("/api/v1/projects/{pid}"))
            .await
            .status,
        204
    );
    app.get_as(&owner, &format!("/api/v1/projects/{pid}"))
        .await
        .error(404, "NOT_FOUND");
    assert_eq!(
        app.get_as(&owner, "/api/v1/projects").await.json["total"],
        0
    );
    let created_events = app.events_of_type("projects.project_created").await;
    assert_eq!(
        created_events[0]["event"]["actor"]["user_id"],
        json!(owner.id)
    );
    assert_eq!(created_events[0]["event"]["actor"]["ip"], "127.0.0.1");
    assert_eq!(
        app.events_of_type("projects.project_deleted").await.len(),
        1
    );
}

#[tokio::test]
async fn project_input_is_validated() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let response = app
        .post_as(&owner, "/api/v1/projects", &json!({"name": ""}))
        .await;
    assert_eq!(response.error(422, "VALIDATION_ERROR")["field"], "name");
    let response = app.post_as(&owner, "/api/v1/projects", &json!({})).await;
    assert_eq!(response.error(422, "VALIDATION_ERROR")["field"], "name");
    let pid = app.project(&owner, "p").await;
    let response = app
        .patch_as(
            &owner,
            &format!("/api/v1/projects/{pid}"),
            &json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(response.error(422, "VALIDATION_ERROR")["field"], "plan");
    app.get_as(&owner, "/api/v1/projects/not-a-uuid")
        .await
        .error(404, "NOT_FOUND");
    app.call(Method::GET, &format!("/api/v1/projects/{pid}"), None, None)
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
}

#[tokio::test]
async fn members_are_added_changed_and_removed_and_the_last_owner_stays() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "team").await;
    let base = format!("/api/v1/projects/{pid}/members");
    let colleague = app.user("colleague").await;

    let added = app
        .post_as(
            &owner,
            &base,
            &json!({"email": colleague.email.to_uppercase(), "role": "manager"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.json["role"], "manager");
    assert_eq!(added.json["user_id"], json!(colleague.id));
    app.post_as(
        &owner,
        &base,
        &json!({"email": colleague.email, "role": "viewer"}),
    )
    .await
    .error(409, "CONFLICT");
    let malformed = app
        .post_as(&owner, &base, &json!({"email": "nobody", "role": "viewer"}))
        .await;
    assert_eq!(malformed.error(422, "VALIDATION_ERROR")["field"], "email");
    let bad_role = app
        .post_as(
            &owner,
            &base,
            &json!({"email": colleague.email, "role": "admin"}),
        )
        .await;
    assert_eq!(bad_role.error(422, "VALIDATION_ERROR")["field"], "role");

    // The colleague now sees the project.
    assert_eq!(
        app.get_as(&colleague, &format!("/api/v1/projects/{pid}"))
            .await
            .status,
        200
    );

    // The only owner cannot leave or step down.
    app.patch_as(
        &owner,
        &format!("{base}/{}", owner.id),
        &json!({"role": "manager"}),
    )
    .await
    .error(409, "CONFLICT");
    app.delete_as(&owner, &format!("{base}/{}", owner.id))
        .await
        .error(409, "CONFLICT");

    // With a second owner, the first may step down.
    let promoted = app
        .patch_as(
            &owner,
            &format!("{base}/{}", colleague.id),
            &json!({"role": "owner"}),
        )
        .await;
    assert_eq!(promoted.json["role"], "owner");
    let stepped_down = app
        .patch_as(
            &owner,
            &format!("{base}/{}", owner.id),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(stepped_down.status, 200, "{}", stepped_down.text);
    // Now a viewer: member management is refused.
    app.delete_as(&owner, &format!("{base}/{}", colleague.id))
        .await
        .error(403, "FORBIDDEN");
    assert_eq!(
        app.delete_as(&colleague, &format!("{base}/{}", owner.id))
            .await
            .status,
        204
    );
    app.get_as(&owner, &format!("/api/v1/projects/{pid}"))
        .await
        .error(404, "NOT_FOUND");
    app.delete_as(&colleague, &format!("{base}/{}", Uuid::now_v7()))
        .await
        .error(404, "NOT_FOUND");

    let changed = app.events_of_type("projects.member_role_changed").await;
    assert_eq!(changed[0]["event"]["old_role"], "manager");
    assert_eq!(changed[0]["event"]["new_role"], "owner");
}

#[tokio::test]
async fn secrets_are_stored_encrypted_and_never_returned() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "vault").await;
    let value = "sk-live-this-is-very-secret-1234";

    let put = app
        .put_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/OPENAI_API_KEY"),
            &json!({"value": value}),
        )
        .await;
    assert_eq!(put.status, 204, "{}", put.text);
    let list = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/secrets"))
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["items"][0]["name"], "OPENAI_API_KEY");
    assert!(!list.text.contains(value));

    let stored: String = app
        .context
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT sealed_value FROM project_secrets",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "sealed_value")
        .unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(value));
    let pid_uuid = ProjectId::from_uuid(Uuid::parse_str(&pid.to_string()).unwrap());
    let read = app
        .service::<ProjectsService>()
        .secret_value(pid_uuid, "OPENAI_API_KEY")
        .await
        .unwrap();
    assert_eq!(read.unwrap().expose_secret(), value);

    // Replacing keeps one secret; the event names it, never the value.
    app.put_as(
        &owner,
        &format!("/api/v1/projects/{pid}/secrets/OPENAI_API_KEY"),
        &json!({"value": "v2-value"}),
    )
    .await;
    let read = app
        .service::<ProjectsService>()
        .secret_value(pid_uuid, "OPENAI_API_KEY")
        .await
        .unwrap();
    assert_eq!(read.unwrap().expose_secret(), "v2-value");
    let events = app.events_of_type("projects.secret_changed").await;
    assert_eq!(events.len(), 2);
    assert!(!serde_json::to_string(&events).unwrap().contains("v2-value"));
    assert_eq!(events[0]["event"]["name"], "OPENAI_API_KEY");

    let bad_name = app
        .put_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/1-bad-name"),
            &json!({"value": "x"}),
        )
        .await;
    assert_eq!(bad_name.error(422, "VALIDATION_ERROR")["field"], "name");
    let empty = app
        .put_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/EMPTY"),
            &json!({"value": ""}),
        )
        .await;
    assert_eq!(empty.error(422, "VALIDATION_ERROR")["field"], "value");

    assert_eq!(
        app.delete_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/OPENAI_API_KEY")
        )
        .await
        .status,
        204
    );
    app.delete_as(
        &owner,
        &format!("/api/v1/projects/{pid}/secrets/OPENAI_API_KEY"),
    )
    .await
    .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn api_keys_are_shown_once_resolve_to_their_project_and_can_be_revoked() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "keys").await;
    let created = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "website", "scopes": ["chat"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = created.json["key"].as_str().unwrap().to_owned();
    let key_id = created.json["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ap_") && key.starts_with(created.json["prefix"].as_str().unwrap()));

    let list = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/api-keys"))
        .await;
    assert_eq!(list.json["items"][0]["name"], "website");
    assert!(list.json["items"][0].get("key").is_none());
    assert!(!list.text.contains(&key));

    let whoami = app
        .send(
            app.client
                .get(app.url("/api/v1/public/api-key"))
                .header("X-Api-Key", &key),
        )
        .await;
    assert_eq!(whoami.status, 200, "{}", whoami.text);
    assert_eq!(whoami.json["project_id"], pid.to_string());
    assert_eq!(whoami.json["scopes"], json!(["chat"]));
    let list = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/api-keys"))
        .await;
    assert!(list.json["items"][0]["last_used_at"].is_string());

    assert_eq!(
        app.delete_as(&owner, &format!("/api/v1/projects/{pid}/api-keys/{key_id}"))
            .await
            .status,
        204
    );
    let revoked = app
        .send(
            app.client
                .get(app.url("/api/v1/public/api-key"))
                .header("X-Api-Key", &key),
        )
        .await;
    revoked.error(401, "INVALID_TOKEN");
    app.get("/api/v1/public/api-key")
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
    app.delete_as(
        &owner,
        &format!("/api/v1/projects/{pid}/api-keys/{}", Uuid::now_v7()),
    )
    .await
    .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_project_stops_its_api_keys() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "short-lived").await;
    let created = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "k"}),
        )
        .await;
    let key = created.json["key"].as_str().unwrap().to_owned();
    app.delete_as(&owner, &format!("/api/v1/projects/{pid}"))
        .await;
    let response = app
        .send(
            app.client
                .get(app.url("/api/v1/public/api-key"))
                .header("X-Api-Key", &key),
        )
        .await;
    response.error(401, "INVALID_TOKEN");
}

/// Every project route, with a body where it needs one, and the least role it needs.
fn project_routes(
    pid: Uuid,
    target: Uuid,
    key_id: Uuid,
) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let p = format!("/api/v1/projects/{pid}");
    vec![
        (Method::GET, p.clone(), None, "viewer"),
        (
            Method::PATCH,
            p.clone(),
            Some(json!({"description": "x"})),
            "manager",
        ),
        (Method::GET, format!("{p}/members"), None, "viewer"),
        (
            Method::POST,
            format!("{p}/members"),
            Some(json!({"email": "nobody@example.com", "role": "viewer"})),
            "owner",
        ),
        (
            Method::PATCH,
            format!("{p}/members/{target}"),
            Some(json!({"role": "viewer"})),
            "owner",
        ),
        (
            Method::DELETE,
            format!("{p}/members/{}", Uuid::now_v7()),
            None,
            "owner",
        ),
        (Method::GET, format!("{p}/invitations"), None, "owner"),
        (
            Method::DELETE,
            format!("{p}/invitations/{}", Uuid::now_v7()),
            None,
            "owner",
        ),
        (Method::GET, format!("{p}/secrets"), None, "manager"),
        (
            Method::PUT,
            format!("{p}/secrets/TOKEN"),
            Some(json!({"value": "v"})),
            "manager",
        ),
        (Method::DELETE, format!("{p}/secrets/NOPE"), None, "manager"),
        (Method::GET, format!("{p}/api-keys"), None, "manager"),
        (
            Method::POST,
            format!("{p}/api-keys"),
            Some(json!({"name": "k"})),
            "manager",
        ),
        (
            Method::DELETE,
            format!("{p}/api-keys/{key_id}"),
            None,
            "manager",
        ),
        (Method::DELETE, p, None, "owner"),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "operator" => 2,
        "manager" => 3,
        "owner" => 4,
        _ => 0,
    }
}

async fn fresh_project(app: &TestApp, owner: &TestUser) -> (Uuid, Uuid, Uuid) {
    let pid = app.project(owner, "matrix").await;
    let target = app.member(pid, owner, "viewer").await;
    let key = app
        .post_as(
            owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "k"}),
        )
        .await;
    let key_id = Uuid::parse_str(key.json["id"].as_str().unwrap()).unwrap();
    (pid, target.id, key_id)
}

#[tokio::test]
async fn each_role_reaches_exactly_the_routes_of_its_rank() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    for role in ["viewer", "operator", "manager", "owner"] {
        // A fresh project per role: the DELETE at the end must not spoil the next role.
        let (pid, target, key_id) = fresh_project(&app, &owner).await;
        let member = app.member(pid, &owner, role).await;
        for (method, path, body, needs) in project_routes(pid, target, key_id) {
            let response = app
                .call(method.clone(), &path, Some(&member), body.as_ref())
                .await;
            if rank(role) >= rank(needs) {
                assert!(
                    response.status < 400 || (response.status == 404 || response.status == 422),
                    "{role} {method} {path}: {} {}",
                    response.status,
                    response.text
                );
                assert_ne!(response.status, 403, "{role} {method} {path}");
            } else {
                let error = response.error(403, "FORBIDDEN");
                assert!(
                    error["message"].as_str().unwrap().contains(needs),
                    "{}",
                    response.text
                );
            }
        }
    }
}

#[tokio::test]
async fn a_member_of_one_project_gets_404_for_every_route_of_another() {
    let app = spawn_app().await;
    let owner_a = app.user("owner-a").await;
    let owner_b = app.user("owner-b").await;
    let (_pid_a, _, _) = fresh_project(&app, &owner_a).await;
    let (pid_b, target_b, key_b) = fresh_project(&app, &owner_b).await;
    for (method, path, body, _) in project_routes(pid_b, target_b, key_b) {
        let response = app
            .call(method.clone(), &path, Some(&owner_a), body.as_ref())
            .await;
        let error = response.error(404, "NOT_FOUND");
        assert_eq!(error["message"], "project not found", "{method} {path}");
    }
    // And project B is untouched.
    assert_eq!(
        app.get_as(&owner_b, &format!("/api/v1/projects/{pid_b}"))
            .await
            .status,
        200
    );
    let listed = app.get_as(&owner_a, "/api/v1/projects").await;
    assert!(!listed.text.contains(&pid_b.to_string()));
}

#[tokio::test]
async fn a_saas_admin_sees_every_project() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "someone's").await;
    let list = app.get_as(&admin, "/api/v1/projects").await;
    assert!(list.text.contains(&pid.to_string()));
    let project = app.get_as(&admin, &format!("/api/v1/projects/{pid}")).await;
    assert_eq!(project.status, 200);
    assert_eq!(project.json["role"], "owner");
}

#[tokio::test]
async fn an_email_without_an_account_gets_an_invitation_that_works_once() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "team").await;
    let base = format!("/api/v1/projects/{pid}/members");
    let email = crate::fixtures::unique_email("newcomer");

    let invited = app
        .post_as(
            &owner,
            &base,
            &json!({"email": email.to_uppercase(), "role": "operator"}),
        )
        .await;
    assert_eq!(invited.status, 202, "{}", invited.text);
    assert_eq!(invited.json["email"], email.to_lowercase());
    assert_eq!(invited.json["role"], "operator");
    let token = invited.json["token"].as_str().unwrap().to_owned();
    assert!(invited.json["expires_at"].is_string());
    // One pending invitation per email.
    let again = app
        .post_as(&owner, &base, &json!({"email": email, "role": "viewer"}))
        .await;
    assert_eq!(
        again.error(409, "CONFLICT")["details"]["invitation_id"],
        invited.json["id"]
    );
    let pending = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/invitations"))
        .await;
    assert_eq!(pending.json["total"], 1, "{}", pending.text);
    assert!(
        pending.json["items"][0].get("token").is_none(),
        "never shown again"
    );

    // Signing up with that email grants nothing by itself.
    let newcomer = app.user("newcomer").await;
    app.get_as(&newcomer, &format!("/api/v1/projects/{pid}"))
        .await
        .error(404, "NOT_FOUND");
    let accept = |user: &crate::fixtures::TestUser, token: &str| {
        let body = json!({ "token": token });
        let user = user.clone();
        let app = &app;
        async move {
            app.post_as(&user, "/api/v1/invitations/accept", &body)
                .await
        }
    };
    let accepted = accept(&newcomer, &token).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.json["project_id"], json!(pid));
    assert_eq!(accepted.json["member"]["role"], "operator");
    let seen = app
        .get_as(&newcomer, &format!("/api/v1/projects/{pid}"))
        .await;
    assert_eq!(seen.json["role"], "operator", "{}", seen.text);
    // A token works once, for anyone.
    let someone = app.user("someone").await;
    accept(&someone, &token).await.error(404, "NOT_FOUND");
    accept(&someone, "inv_made-up")
        .await
        .error(404, "NOT_FOUND");
    let events = app.events_of_type("projects.invitation_accepted").await;
    assert_eq!(events.len(), 1);
    assert!(!serde_json::to_string(&events).unwrap().contains(&token));

    // Revoked: the token stops working.
    let other = app
        .post_as(
            &owner,
            &base,
            &json!({"email": crate::fixtures::unique_email("later"), "role": "viewer"}),
        )
        .await;
    assert_eq!(other.status, 202);
    let revoked = app
        .delete_as(
            &owner,
            &format!(
                "/api/v1/projects/{pid}/invitations/{}",
                other.json["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(revoked.status, 204);
    accept(&someone, other.json["token"].as_str().unwrap())
        .await
        .error(404, "NOT_FOUND");
    // Only owners manage invitations; another project's owner sees nothing.
    app.get_as(&newcomer, &format!("/api/v1/projects/{pid}/invitations"))
        .await
        .error(403, "FORBIDDEN");
    let stranger = app.user("stranger").await;
    app.delete_as(
        &stranger,
        &format!(
            "/api/v1/projects/{pid}/invitations/{}",
            other.json["id"].as_str().unwrap()
        ),
    )
    .await
    .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn adding_members_is_throttled_per_user() {
    let app = crate::helpers::spawn_app_with(crate::helpers::AppOptions {
        overrides: &[("APP__PROJECTS__MEMBER_ADDITIONS_PER_HOUR", "2")],
        ..Default::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "team").await;
    let base = format!("/api/v1/projects/{pid}/members");
    for _ in 0..2 {
        let invited = app
            .post_as(
                &owner,
                &base,
                &json!({"email": crate::fixtures::unique_email("probe"), "role": "viewer"}),
            )
            .await;
        assert_eq!(invited.status, 202, "{}", invited.text);
    }
    let limited = app
        .post_as(
            &owner,
            &base,
            &json!({"email": crate::fixtures::unique_email("probe"), "role": "viewer"}),
        )
        .await;
    limited.error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
}

#[tokio::test]
async fn an_invitation_past_its_expiry_is_no_longer_pending_nor_accepted() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "team").await;
    let email = crate::fixtures::unique_email("late");
    let invited = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/members"),
            &json!({"email": email, "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 202, "{}", invited.text);
    let token = invited.json["token"].as_str().unwrap().to_owned();
    let invitations = format!("/api/v1/projects/{pid}/invitations");
    assert_eq!(app.get_as(&owner, &invitations).await.json["total"], 1);

    // The default lifetime is 7 days: a day later it has lapsed (and so has the owner's
    // access token: they sign in again).
    clock.advance(chrono::Duration::days(8));
    let owner = app.logged_in(owner.id, owner.email.clone()).await;
    assert_eq!(app.get_as(&owner, &invitations).await.json["total"], 0);
    let newcomer = app.user("late").await;
    app.post_as(
        &newcomer,
        "/api/v1/invitations/accept",
        &json!({ "token": token }),
    )
    .await
    .error(404, "NOT_FOUND");
    // A new invitation for the same email is allowed again.
    let again = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/members"),
            &json!({"email": email, "role": "viewer"}),
        )
        .await;
    assert_eq!(again.status, 202, "{}", again.text);
}

#[tokio::test]
async fn a_former_owners_pending_invitations_stop_working() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "team").await;
    let base = format!("/api/v1/projects/{pid}/members");
    let co_owner = app.member(pid, &owner, "owner").await;
    // The co-owner keeps an owner invitation for an address of their own ...
    let kept = app
        .post_as(
            &co_owner,
            &base,
            &json!({"email": crate::fixtures::unique_email("backdoor"), "role": "owner"}),
        )
        .await;
    assert_eq!(kept.status, 202, "{}", kept.text);
    // ... and is demoted: the invitation goes with their ownership.
    let demoted = app
        .patch_as(
            &owner,
            &format!("{base}/{}", co_owner.id),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    let outsider = app.user("outsider").await;
    app.post_as(
        &outsider,
        "/api/v1/invitations/accept",
        &json!({"token": kept.json["token"]}),
    )
    .await
    .error(404, "NOT_FOUND");
    let pending = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/invitations"))
        .await;
    assert_eq!(pending.json["total"], 0, "{}", pending.text);
}
