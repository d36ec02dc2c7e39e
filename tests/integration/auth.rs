//! Accounts and sessions over HTTP: registration, login and its throttling, token rotation
//! and reuse detection, password changes, deactivation, forged tokens, user administration.

use std::time::{Duration, Instant};

use avatar_platform::core::clock::ManualClock;
use avatar_platform::core::crypto::PasswordHashing;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::fixtures::{PASSWORD, unique_email};
use crate::helpers::{AppOptions, TestApp, spawn_app, spawn_app_with};

/// The secret config/test.toml signs tokens with.
const TEST_JWT_SECRET: &str = "test-only-jwt-secret-0123456789abcdef0123456789";

async fn me(app: &TestApp, token: &str) -> crate::helpers::TestResponse {
    app.send(
        app.client
            .get(app.url("/api/v1/auth/me"))
            .bearer_auth(token),
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> crate::helpers::TestResponse {
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
}

#[tokio::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let email = unique_email("Ada");
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email.to_uppercase(), "password": PASSWORD, "full_name": "Ada L"}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text);
    let user = &response.json["user"];
    let email = email.to_lowercase();
    assert_eq!(user["email"], email, "stored lowercased");
    assert_eq!(user["role"], "user");
    assert_eq!(user["full_name"], "Ada L");
    assert!(user.get("password_hash").is_none());

    let login = app.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.json["token_type"], "bearer");
    assert_eq!(login.json["expires_in"], 900);
    let access = login.json["access_token"].as_str().unwrap();
    assert!(
        login.json["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("rt_")
    );

    let me = me(&app, access).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["id"], user["id"]);
    assert_eq!(me.json["email"], email);
    assert_eq!(me.json["role"], "user");
    assert!(me.json["created_at"].as_str().unwrap().ends_with('Z'));

    // Events carry the actor and the client's IP, for the audit log.
    let registered = app.events_of_type("auth.user_registered").await;
    assert_eq!(registered[0]["event"]["email"], email);
    let logged_in = app.events_of_type("auth.user_logged_in").await;
    assert_eq!(logged_in[0]["event"]["actor"]["ip"], "127.0.0.1");
    assert_eq!(logged_in[0]["event"]["actor"]["user_id"], user["id"]);
}

#[tokio::test]
async fn registration_rejects_bad_input_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": unique_email("x"), "password": "short"}),
            "password",
        ),
        (
            json!({"email": unique_email("x"), "password": "x".repeat(129)}),
            "password",
        ),
        (json!({"email": unique_email("x")}), "password"),
        (json!({"password": PASSWORD}), "email"),
        (json!({"email": 7, "password": PASSWORD}), "email"),
    ];
    for (body, field) in cases {
        let response = app.post_json("/api/v1/auth/register", &body).await;
        let error = response.error(422, "VALIDATION_ERROR");
        assert_eq!(error["field"], field, "{body}");
    }

    let email = unique_email("dup");
    let body = json!({"email": email, "password": PASSWORD});
    assert_eq!(
        app.post_json("/api/v1/auth/register", &body).await.status,
        201
    );
    let again = json!({"email": email.to_uppercase(), "password": PASSWORD});
    let response = app.post_json("/api/v1/auth/register", &again).await;
    let error = response.error(409, "CONFLICT");
    assert_eq!(error["field"], "email");
}

#[tokio::test]
async fn registration_can_be_closed_by_platform_config() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let closed = app
        .patch_as(
            &admin,
            "/api/v1/admin/platform-config",
            &json!({"registration_open": false}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": unique_email("late"), "password": PASSWORD}),
        )
        .await;
    response.error(403, "FORBIDDEN");
    assert_eq!(response.json["error"]["message"], "registration is closed");
}

#[tokio::test]
async fn login_answers_the_same_for_unknown_email_and_wrong_password() {
    let app = spawn_app().await;
    let user = app.user("known").await;
    let mut wrong_password_time = Duration::ZERO;
    let mut unknown_email_time = Duration::ZERO;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let wrong = app.login(&user.email, "wrong password!!").await;
        wrong_password_time += started.elapsed();
        let started = Instant::now();
        let unknown = app.login(&unique_email("nobody"), "wrong password!!").await;
        unknown_email_time += started.elapsed();
        wrong.error(401, "INVALID_TOKEN");
        bodies.push((wrong.json, unknown.json));
    }
    for (wrong, unknown) in bodies {
        assert_eq!(wrong, unknown);
        assert_eq!(wrong["error"]["message"], "wrong email or password");
    }
    // Both paths run argon2 (the unknown one against a dummy hash): neither is a shortcut.
    assert!(
        unknown_email_time * 3 > wrong_password_time,
        "unknown email {unknown_email_time:?} vs wrong password {wrong_password_time:?}"
    );
}

#[tokio::test]
async fn repeated_logins_are_throttled_per_email_and_per_ip() {
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__AUTH__LOGIN_ATTEMPTS_PER_EMAIL_AND_IP", "3"),
            ("APP__AUTH__LOGIN_ATTEMPTS_PER_IP", "6"),
        ],
        ..AppOptions::default()
    })
    .await;
    let user = app.user("target").await;
    // Successful logins do not count.
    for _ in 0..4 {
        assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
    }
    for _ in 0..3 {
        app.login(&user.email, "wrong password!!")
            .await
            .error(401, "INVALID_TOKEN");
    }
    // Now even the right password waits for the window.
    let limited = app.login(&user.email, PASSWORD).await;
    limited.error(429, "RATE_LIMITED");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");

    // Other emails from the same IP go on until the IP's own limit of 6 failures.
    for _ in 0..3 {
        app.login(&unique_email("other"), "whatever pw!")
            .await
            .error(401, "INVALID_TOKEN");
    }
    app.login(&unique_email("other"), "whatever pw!")
        .await
        .error(429, "RATE_LIMITED");
}

/// A login from `ip` (the app trusts `X-Forwarded-For`).
async fn login_from(
    app: &TestApp,
    ip: &str,
    email: &str,
    password: &str,
) -> crate::helpers::TestResponse {
    app.send(
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn failures_from_elsewhere_do_not_lock_the_owner_out_up_to_the_email_ceiling() {
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__SERVER__TRUST_FORWARDED_FOR", "true"),
            ("APP__AUTH__LOGIN_ATTEMPTS_PER_EMAIL_AND_IP", "3"),
            ("APP__AUTH__LOGIN_ATTEMPTS_PER_EMAIL", "8"),
        ],
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    for _ in 0..3 {
        login_from(&app, "198.51.100.7", &owner.email, "guess guess guess")
            .await
            .error(401, "INVALID_TOKEN");
    }
    // The attacker's address is throttled for this account ...
    login_from(&app, "198.51.100.7", &owner.email, PASSWORD)
        .await
        .error(429, "RATE_LIMITED");
    // ... the owner, elsewhere, is not.
    assert_eq!(
        login_from(&app, "203.0.113.20", &owner.email, PASSWORD)
            .await
            .status,
        200
    );
    // Guessing from many addresses meets the per-email ceiling (8 failures) at last.
    for attempt in 0..5 {
        login_from(
            &app,
            &format!("192.0.2.{attempt}"),
            &owner.email,
            "guess guess guess",
        )
        .await
        .error(401, "INVALID_TOKEN");
    }
    login_from(&app, "203.0.113.20", &owner.email, PASSWORD)
        .await
        .error(429, "RATE_LIMITED");
}

#[tokio::test]
async fn registration_is_throttled_per_client_ip() {
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__AUTH__REGISTRATIONS_PER_IP", "3")],
        ..AppOptions::default()
    })
    .await;
    let register = || async {
        app.post_json(
            "/api/v1/auth/register",
            &json!({"email": unique_email("signup"), "password": PASSWORD}),
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(register().await.status, 201);
    }
    let limited = register().await;
    limited.error(429, "RATE_LIMITED");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = spawn_app().await;
    let user = app.user("rotating").await;
    let first = refresh(&app, &user.refresh_token).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second_token = first.json["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_token, user.refresh_token);
    let second = refresh(&app, &second_token).await;
    assert_eq!(second.status, 200);
    let third_token = second.json["refresh_token"].as_str().unwrap().to_owned();

    // The first token is spent: presenting it again is a theft signal.
    let reused = refresh(&app, &user.refresh_token).await;
    reused.error(401, "INVALID_TOKEN");
    assert!(
        reused.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    // ... and the live token of that family is dead too.
    refresh(&app, &third_token)
        .await
        .error(401, "INVALID_TOKEN");
    assert_eq!(
        app.events_of_type("auth.refresh_token_reuse_detected")
            .await
            .len(),
        1
    );

    // A separate login (another family) is untouched.
    let other = app.login(&user.email, PASSWORD).await;
    assert_eq!(
        refresh(&app, other.json["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );

    refresh(&app, "rt_made-up")
        .await
        .error(401, "INVALID_TOKEN");
    app.post_json("/api/v1/auth/refresh", &json!({}))
        .await
        .error(422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn concurrent_uses_of_one_refresh_token_get_the_same_new_pair() {
    let app = spawn_app().await;
    let user = app.user("racer").await;
    let attempts = (0..5).map(|_| refresh(&app, &user.refresh_token));
    let responses = futures_util::future::join_all(attempts).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text);
    }
    // Two tabs (or a retry) end up with one session, not a revoked one.
    let pairs: std::collections::BTreeSet<(String, String)> = responses
        .iter()
        .map(|response| {
            (
                response.json["access_token"].as_str().unwrap().to_owned(),
                response.json["refresh_token"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let (access, next) = pairs.into_iter().next().unwrap();
    assert_eq!(me(&app, &access).await.status, 200);
    assert_eq!(refresh(&app, &next).await.status, 200);
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_after_the_grace_window_revokes_the_session() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__AUTH__REFRESH_REUSE_GRACE_SECS", "1")],
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let user = app.user("slow").await;
    let first = refresh(&app, &user.refresh_token).await;
    assert_eq!(first.status, 200);
    let again = refresh(&app, &user.refresh_token).await;
    assert_eq!(again.json, first.json, "within the window: the same pair");
    clock.advance(chrono::Duration::milliseconds(1_100));
    refresh(&app, &user.refresh_token)
        .await
        .error(401, "INVALID_TOKEN");
    // The whole family went with it, the pair handed out included.
    refresh(&app, first.json["refresh_token"].as_str().unwrap())
        .await
        .error(401, "INVALID_TOKEN");
    me(&app, first.json["access_token"].as_str().unwrap())
        .await
        .error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn tokens_expire_by_the_apps_clock() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with(AppOptions {
        clock: Some(clock.clone()),
        ..AppOptions::default()
    })
    .await;
    let user = app.user("timely").await;
    // 900 s to live plus 5 s of leeway: still good just before, refused just after.
    clock.advance(chrono::Duration::seconds(900 + 4));
    assert_eq!(me(&app, &user.access_token).await.status, 200);
    clock.advance(chrono::Duration::seconds(2));
    me(&app, &user.access_token)
        .await
        .error(401, "INVALID_TOKEN");
    // The refresh token lives 30 days.
    let renewed = refresh(&app, &user.refresh_token).await;
    assert_eq!(renewed.status, 200);
    clock.advance(chrono::Duration::days(30) + chrono::Duration::seconds(1));
    refresh(&app, renewed.json["refresh_token"].as_str().unwrap())
        .await
        .error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = spawn_app().await;
    let user = app.user("leaving").await;
    let response = app
        .post_as(
            &user,
            "/api/v1/auth/logout",
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(response.status, 204, "{}", response.text);
    refresh(&app, &user.refresh_token)
        .await
        .error(401, "INVALID_TOKEN");
    // Without a token, logout is refused.
    app.post_json("/api/v1/auth/logout", &json!({"refresh_token": "x"}))
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
}

#[tokio::test]
async fn changing_the_password_revokes_other_sessions_only() {
    let app = spawn_app().await;
    let here = app.user("changer").await;
    let elsewhere = app.login(&here.email, PASSWORD).await;
    let elsewhere_refresh = elsewhere.json["refresh_token"].as_str().unwrap().to_owned();

    let wrong = app
        .post_as(
            &here,
            "/api/v1/auth/change-password",
            &json!({"current_password": "not it at all", "new_password": "a new long password"}),
        )
        .await;
    assert_eq!(
        wrong.error(422, "VALIDATION_ERROR")["field"],
        "current_password"
    );
    let weak = app
        .post_as(
            &here,
            "/api/v1/auth/change-password",
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.error(422, "VALIDATION_ERROR")["field"], "new_password");

    let changed = app
        .post_as(
            &here,
            "/api/v1/auth/change-password",
            &json!({"current_password": PASSWORD, "new_password": "a new long password"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text);

    refresh(&app, &elsewhere_refresh)
        .await
        .error(401, "INVALID_TOKEN");
    assert_eq!(
        refresh(&app, &here.refresh_token).await.status,
        200,
        "this session stays"
    );
    app.login(&here.email, PASSWORD)
        .await
        .error(401, "INVALID_TOKEN");
    assert_eq!(
        app.login(&here.email, "a new long password").await.status,
        200
    );
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in_and_their_tokens_stop_working() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let user = app.user("soon-gone").await;
    assert_eq!(me(&app, &user.access_token).await.status, 200);

    let response = app
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", user.id),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["is_active"], false);

    me(&app, &user.access_token)
        .await
        .error(401, "INVALID_TOKEN");
    refresh(&app, &user.refresh_token)
        .await
        .error(401, "INVALID_TOKEN");
    app.login(&user.email, PASSWORD)
        .await
        .error(401, "INVALID_TOKEN");

    app.patch_as(
        &admin,
        &format!("/api/v1/admin/users/{}", user.id),
        &json!({"is_active": true}),
    )
    .await;
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
}

fn forge(claims: &Value, algorithm: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let app = spawn_app().await;
    let user = app.user("victim").await;
    let admin = app.admin().await;
    // A forged token must name a live session: take the user's own from their real token.
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(user.access_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let session = payload["sid"].clone();
    let claims = |exp: i64| {
        json!({"sub": user.id, "role": "user", "iat": now() - 10, "exp": exp,
               "jti": uuid::Uuid::new_v4(), "sid": session})
    };
    // A well-formed token we sign ourselves works: the checks below fail for their reason.
    let good = forge(&claims(now() + 60), Algorithm::HS256, TEST_JWT_SECRET);
    assert_eq!(me(&app, &good).await.status, 200);

    // Signed right, but for a session that does not exist.
    let mut unknown_session = claims(now() + 60);
    unknown_session["sid"] = json!(uuid::Uuid::new_v4());
    let unknown_session = forge(&unknown_session, Algorithm::HS256, TEST_JWT_SECRET);
    me(&app, &unknown_session).await.error(401, "INVALID_TOKEN");

    let expired = forge(&claims(now() - 60), Algorithm::HS256, TEST_JWT_SECRET);
    me(&app, &expired).await.error(401, "INVALID_TOKEN");

    let wrong_key = forge(
        &claims(now() + 60),
        Algorithm::HS256,
        "another-secret-another-secret-00",
    );
    me(&app, &wrong_key).await.error(401, "INVALID_TOKEN");

    let other_algorithm = forge(&claims(now() + 60), Algorithm::HS512, TEST_JWT_SECRET);
    me(&app, &other_algorithm).await.error(401, "INVALID_TOKEN");

    // alg=none: header and payload, no signature.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(now() + 60).to_string());
    me(&app, &format!("{header}.{payload}."))
        .await
        .error(401, "INVALID_TOKEN");

    // Tampered: a user's genuine token with its subject swapped for the admin's.
    let parts: Vec<&str> = user.access_token.split('.').collect();
    let mut body: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    body["sub"] = json!(admin.id);
    body["role"] = json!("saas_admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(body.to_string()),
        parts[2]
    );
    me(&app, &tampered).await.error(401, "INVALID_TOKEN");

    me(&app, "garbage").await.error(401, "INVALID_TOKEN");
    app.get("/api/v1/auth/me")
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
    let basic = app
        .send(
            app.client
                .get(app.url("/api/v1/auth/me"))
                .header("Authorization", "Basic YTpi"),
        )
        .await;
    basic.error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_routes_at_once() {
    let app = spawn_app().await;
    let root = app.admin().await;
    let other = app.admin().await;
    assert_eq!(app.get_as(&other, "/api/v1/admin/users").await.status, 200);
    app.patch_as(
        &root,
        &format!("/api/v1/admin/users/{}", other.id),
        &json!({"role": "user"}),
    )
    .await;
    // Same token, role read from the database.
    app.get_as(&other, "/api/v1/admin/users")
        .await
        .error(403, "FORBIDDEN");
}

#[tokio::test]
async fn admins_list_search_and_update_users() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let alice = app.user("alice").await;
    let _bob = app.user("bob").await;

    let all = app.get_as(&admin, "/api/v1/admin/users").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.json["total"], 3);
    assert_eq!(all.json["limit"], 50);
    assert_eq!(all.json["offset"], 0);

    let found = app.get_as(&admin, "/api/v1/admin/users?q=ALICE").await;
    assert_eq!(found.json["total"], 1);
    assert_eq!(found.json["items"][0]["email"], alice.email);

    let paged = app
        .get_as(&admin, "/api/v1/admin/users?limit=2&offset=2")
        .await;
    assert_eq!(paged.json["items"].as_array().unwrap().len(), 1);
    let too_many = app.get_as(&admin, "/api/v1/admin/users?limit=500").await;
    assert_eq!(too_many.error(422, "VALIDATION_ERROR")["field"], "limit");

    let promoted = app
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", alice.id),
            &json!({"role": "saas_admin"}),
        )
        .await;
    assert_eq!(promoted.json["role"], "saas_admin");
    let bad_role = app
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", alice.id),
            &json!({"role": "god"}),
        )
        .await;
    assert_eq!(bad_role.error(422, "VALIDATION_ERROR")["field"], "role");
    let unknown = app
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7()),
            &json!({"is_active": false}),
        )
        .await;
    unknown.error(404, "NOT_FOUND");
    let myself = app
        .patch_as(
            &admin,
            &format!("/api/v1/admin/users/{}", admin.id),
            &json!({"is_active": false}),
        )
        .await;
    myself.error(409, "CONFLICT");

    let plain = app.user("plain").await;
    app.get_as(&plain, "/api/v1/admin/users")
        .await
        .error(403, "FORBIDDEN");
    app.get("/api/v1/admin/users")
        .await
        .error(401, "AUTHENTICATION_REQUIRED");
    let updated = app.events_of_type("auth.user_updated").await;
    assert_eq!(updated[0]["event"]["actor"]["user_id"], json!(admin.id));
}

#[tokio::test]
async fn a_password_hashed_with_old_parameters_is_rehashed_at_login() {
    let app = spawn_app().await;
    let user = app.user("legacy").await;
    let old_hash = PasswordHashing::with_params(8 * 1024, 1)
        .unwrap()
        .hash(PASSWORD)
        .unwrap();
    let db = &app.context.db;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE users SET password_hash = $1 WHERE id = $2",
        [old_hash.into(), user.id.into()],
    ))
    .await
    .unwrap();
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
    let stored: String = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT password_hash FROM users WHERE id = $1",
            [user.id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "password_hash")
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(app.login(&user.email, PASSWORD).await.status, 200);
}

#[tokio::test]
async fn wrong_methods_on_auth_routes_answer_405_and_nothing_more() {
    let app = spawn_app().await;
    let response = app
        .call(Method::GET, "/api/v1/auth/login", None, None)
        .await;
    let error = response.error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(error["details"], json!({"allow": ["POST"]}));
}

#[tokio::test]
async fn ending_a_session_ends_its_access_tokens_too() {
    // No grace window: the reuse below counts as theft at once.
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__AUTH__REFRESH_REUSE_GRACE_SECS", "0")],
        ..AppOptions::default()
    })
    .await;
    let user = app.user("session").await;
    assert_eq!(me(&app, &user.access_token).await.status, 200);
    let logout = app
        .post_as(
            &user,
            "/api/v1/auth/logout",
            &json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(logout.status, 204);
    me(&app, &user.access_token)
        .await
        .error(401, "INVALID_TOKEN");

    // Reuse detection kills the family's access tokens as well.
    let login = app.login(&user.email, PASSWORD).await;
    let access = login.json["access_token"].as_str().unwrap().to_owned();
    let first = login.json["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&app, &first).await;
    let new_access = rotated.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&app, &new_access).await.status, 200);
    refresh(&app, &first).await.error(401, "INVALID_TOKEN");
    me(&app, &access).await.error(401, "INVALID_TOKEN");
    me(&app, &new_access).await.error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_ip_is_the_entry_the_proxy_added() {
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__SERVER__TRUST_FORWARDED_FOR", "true")],
        ..AppOptions::default()
    })
    .await;
    let user = app.user("proxied").await;
    let response = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("X-Forwarded-For", "1.2.3.4, 203.0.113.9")
                .json(&json!({"email": user.email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status, 200);
    let logins = app.events_of_type("auth.user_logged_in").await;
    assert_eq!(
        logins.last().unwrap()["event"]["actor"]["ip"],
        "203.0.113.9"
    );
}

#[tokio::test]
async fn oversized_json_is_refused_before_it_is_read() {
    let app = spawn_app().await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": huge, "password": "p"}),
        )
        .await;
    response.error(413, "PAYLOAD_TOO_LARGE");
}
