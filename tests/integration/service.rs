//! The service endpoints and cross-cutting HTTP behaviour, over real HTTP.

use serde_json::json;

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_answers_ok_with_the_version() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn ready_answers_200_when_database_cache_and_storage_answer() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.json,
        json!({"status": "ready", "checks": {"database": "ok", "cache": "ok", "storage": "ok"}})
    );
}

#[tokio::test]
async fn ready_answers_503_naming_the_dependency_that_failed() {
    // An S3 endpoint where nothing listens: the app starts (bucket creation is off) but the
    // storage check fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__STORAGE__BACKEND", "s3"),
            ("APP__STORAGE__S3__ENDPOINT", &endpoint),
            ("APP__STORAGE__S3__ACCESS_KEY", "key"),
            ("APP__STORAGE__S3__SECRET_KEY", "secret"),
            ("APP__STORAGE__S3__CREATE_BUCKET", "false"),
        ],
        ..AppOptions::default()
    })
    .await;
    let response = app.get("/health/ready").await;
    let error = response.error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(error["details"]["failed"], json!(["storage"]));
    assert_eq!(error["details"]["checks"]["database"], "ok");
    assert_eq!(error["details"]["checks"]["cache"], "ok");
    assert_ne!(error["details"]["checks"]["storage"], "ok");
    assert!(error["message"].as_str().unwrap().contains("storage"));
}

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let sent = app
        .send(
            app.client
                .get(app.url("/health"))
                .header("X-Request-Id", "abc-123.test"),
        )
        .await;
    assert_eq!(sent.header("x-request-id"), Some("abc-123.test"));

    let generated = app.get("/health").await;
    let id = generated.header("x-request-id").expect("a generated id");
    let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 7);

    // A hostile id (spaces, too long) is replaced, not reflected.
    let hostile = app
        .send(
            app.client
                .get(app.url("/health"))
                .header("X-Request-Id", "x".repeat(500)),
        )
        .await;
    assert_ne!(
        hostile.header("x-request-id"),
        Some("x".repeat(500).as_str())
    );
    assert!(uuid::Uuid::parse_str(hostile.header("x-request-id").unwrap()).is_ok());
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/no-such-thing").await;
    let error = response.error(404, "NOT_FOUND");
    assert_eq!(error["message"], "no route for GET /api/v1/no-such-thing");
    assert!(response.header("x-request-id").is_some());

    // An existing path with another method: 405, and what is allowed.
    let response = app.post_json("/health", &json!({})).await;
    let error = response.error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(error["details"]["allow"], json!(["GET"]));
    assert_eq!(response.header("allow"), Some("GET"));
    let project = format!("/api/v1/projects/{}", uuid::Uuid::now_v7());
    let response = app.send(app.client.put(app.url(&project))).await;
    let error = response.error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(error["details"]["allow"], json!(["DELETE", "GET", "PATCH"]));
    assert_eq!(response.header("allow"), Some("DELETE, GET, PATCH"));
    let response = app.get("/api/v1/auth/login").await;
    assert_eq!(
        response.error(405, "METHOD_NOT_ALLOWED")["details"]["allow"],
        json!(["POST"])
    );
}

#[tokio::test]
async fn text_with_a_nul_character_is_refused_naming_the_field_and_nothing_is_written() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let named = app
        .post_as(&owner, "/api/v1/projects", &json!({"name": "bad\0name"}))
        .await;
    assert_eq!(named.error(422, "VALIDATION_ERROR")["field"], "name");
    let listed = app.get_as(&owner, "/api/v1/projects").await;
    assert_eq!(listed.json["total"], 0, "{}", listed.text);

    let pid = app.project(&owner, "p").await;
    let nested = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "a", "system_prompt": "fine",
                    "llm": {"model": "gpt\0"}}),
        )
        .await;
    let error = nested.error(422, "VALIDATION_ERROR");
    assert_eq!(error["field"], "llm.model");
    assert_eq!(
        error["message"],
        "llm.model: must not contain NUL characters (\\u0000)"
    );
    let query = app
        .get_as(&owner, &format!("/api/v1/projects/{pid}/end-users?q=a%00b"))
        .await;
    assert_eq!(query.error(422, "VALIDATION_ERROR")["field"], "q");
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "x\0@example.com", "password": "whatever-long"}),
        )
        .await;
    assert_eq!(login.error(422, "VALIDATION_ERROR")["field"], "email");
    // An escaped backslash before `u0000` is text like any other.
    let fine = app
        .post_as(&owner, "/api/v1/projects", &json!({"name": "C:\\u0000dir"}))
        .await;
    assert_eq!(fine.status, 201, "{}", fine.text);
    assert_eq!(fine.json["name"], "C:\\u0000dir");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_show_pool_and_jobs() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status, 200);
    }
    app.get("/nope").await;
    // Labelled with the route's template, not the path (ids would make a series each).
    let project = app
        .get("/api/v1/projects/0193a1b2-7c4d-7000-8000-00000000002a")
        .await;
    assert_eq!(project.status, 401, "{}", project.text);
    let response = app.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = &response.text;
    let health_count: f64 = text
        .lines()
        .find(|line| {
            line.starts_with("http_requests_total{")
                && line.contains("route=\"/health\"")
                && line.contains("status=\"200\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no /health counter in:\n{text}"));
    // The recorder is process-wide: other tests' requests count too.
    assert!(health_count >= 3.0, "{health_count}");
    assert!(text.contains("route=\"unmatched\""), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("http_requests_total{")
                && line.contains("route=\"/api/v1/projects/{pid}\"")
                && line.contains("status=\"401\"")),
        "{text}"
    );
    assert!(!text.contains("00000000002a"), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("db_pool_connections{state=\"open\"}"),
        "{text}"
    );
    assert!(text.contains("jobs_queued{state=\"new\"}"), "{text}");
}

#[tokio::test]
async fn openapi_is_3_1_and_swagger_ui_renders() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json["openapi"], "3.1.0");
    assert_eq!(response.json["info"]["title"], "Avatar Platform API");
    for path in ["/health", "/health/ready", "/metrics"] {
        assert!(
            response.json["paths"][path]["get"].is_object(),
            "{path} missing"
        );
    }
    assert!(response.json["components"]["schemas"]["ErrorEnvelope"].is_object());

    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.header("location"), Some("/docs/"));
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(docs.text.contains("swagger-ui"), "{}", docs.text);
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert!(
        initializer.text.contains("/openapi.json"),
        "{}",
        initializer.text
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__SERVER__CORS_ALLOWED_ORIGINS", "https://dash.example")],
        ..AppOptions::default()
    })
    .await;
    let allowed = app
        .send(
            app.client
                .get(app.url("/health"))
                .header("Origin", "https://dash.example"),
        )
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    let refused = app
        .send(
            app.client
                .get(app.url("/health"))
                .header("Origin", "https://evil.example"),
        )
        .await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    // A preflight from another origin is refused in the documented envelope, not in
    // actix-cors' plain text.
    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/me"))
                .header("Origin", "https://evil.example")
                .header("Access-Control-Request-Method", "GET"),
        )
        .await;
    let error = preflight.error(400, "BAD_REQUEST");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("origin"),
        "{}",
        preflight.text
    );
}

#[tokio::test]
async fn serve_runs_job_workers_in_process() {
    use avatar_platform::core::jobs::Sweeper;
    let app = spawn_app_with(AppOptions {
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    // `serve` scheduled the sweeper; a due run of it is picked up by the in-process workers.
    let queue = &app.context.jobs;
    let id = queue
        .enqueue(&Sweeper {
            cron: "0 0 0 1 1 *".into(),
        })
        .await
        .unwrap();
    let pending = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the due task runs",
        || async {
            let counts = avatar_platform::core::jobs::task_counts(&app.context.db)
                .await
                .unwrap();
            let pending: i64 = ["new", "in_progress", "retried"]
                .iter()
                .map(|state| counts.get(*state).copied().unwrap_or(0))
                .sum();
            // Left: the cron-scheduled sweeper (future) and its successor; the due one ran.
            let due = sea_orm::ConnectionTrait::query_one_raw(
                app.context.db.connection(),
                sea_orm::Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    "SELECT count(*) AS n FROM fang_tasks WHERE id = $1",
                    [id.into()],
                ),
            )
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
            if due == 0 { Ok(pending) } else { Err(due) }
        },
    )
    .await;
    assert!(pending >= 1, "the cron sweeper stays scheduled");
}
