//! Dependency outages with real processes: a Redis of the test's own, stopped and started
//! again, and the database behind a TCP proxy the test cuts. The shared services other tests
//! use are never touched.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::fixtures::unique_email;
use crate::helpers::{AppOptions, TestApp, eventually, spawn_app_with};
use crate::processes::free_port;

use crate::fixtures::PASSWORD;

/// A `redis-server` of this test's own, in the foreground (killed when dropped).
struct OwnRedis {
    port: u16,
    process: tokio::process::Child,
}

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let process = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (make test installs it)");
        eventually(
            Duration::from_secs(10),
            "redis-server accepts connections",
            || async { TcpStream::connect(("127.0.0.1", port)).await.map(drop) },
        )
        .await;
        OwnRedis { port, process }
    }

    async fn stop(mut self) {
        self.process.kill().await.expect("redis-server stops");
    }
}

async fn register_and_login(app: &TestApp) -> (u16, u16) {
    let email = unique_email("outage");
    let registered = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let login = app.login(&email, PASSWORD).await;
    (registered.status, login.status)
}

#[tokio::test]
async fn without_redis_the_platform_keeps_serving_on_its_in_process_cache() {
    let redis = OwnRedis::start(free_port()).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__CACHE__REDIS_URL", &url),
            ("APP__CACHE__TIMEOUT_MS", "300"),
            ("APP__CACHE__RETRY_SECS", "1"),
        ],
        ..AppOptions::default()
    })
    .await;
    assert_eq!(register_and_login(&app).await, (201, 200));
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let avatar = app
        .create_avatar(
            &owner,
            pid,
            &json!({"name": "a", "system_prompt": "Answer briefly."}),
        )
        .await;
    let aid = avatar.json["id"].as_str().unwrap().to_owned();
    let key = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "site"}),
        )
        .await
        .json["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let public_chat = || async {
        app.send(
            app.client
                .post(app.url(&format!("/api/v1/public/avatars/{aid}/chat")))
                .header("X-Api-Key", &key)
                .json(&json!({"end_user": {"external_id": "u1"}, "message": "Hello?"})),
        )
        .await
    };
    assert_eq!(public_chat().await.status, 200);

    let port = redis.port;
    redis.stop().await;
    assert_eq!(register_and_login(&app).await, (201, 200));
    let answered = public_chat().await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["status"], "degraded");
    assert_eq!(ready.json["checks"]["database"], "ok");
    assert_ne!(ready.json["checks"]["cache"], "ok");

    // Redis comes back: so does the platform, by itself.
    let _redis = OwnRedis::start(port).await;
    eventually(
        Duration::from_secs(15),
        "the platform is ready again",
        || async {
            let ready = app.get("/health/ready").await;
            if ready.json["status"] == "ready" {
                Ok(())
            } else {
                Err(ready.text)
            }
        },
    )
    .await;
    assert_eq!(register_and_login(&app).await, (201, 200));
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection dropped, new
/// ones refused) and restore.
struct CuttableProxy {
    port: u16,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accepting: JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepting = {
            let open = open.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    connections.lock().unwrap().push(relay);
                }
            })
        };
        CuttableProxy {
            port,
            open,
            connections,
            _accepting: accepting,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `host:port` of the server a PostgreSQL URL names.
fn server_of(url: &str) -> SocketAddr {
    let authority = url.split("://").nth(1).unwrap();
    let host_port = authority
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "5432"));
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

#[tokio::test]
async fn with_the_database_gone_requests_answer_503_quickly_and_recover_without_a_restart() {
    let database = crate::helpers::TestDatabase::create().await;
    let proxy = CuttableProxy::start(server_of(&database.url)).await;
    let proxied = database.url.replacen(
        &format!(":{}/", server_of(&database.url).port()),
        &format!(":{}/", proxy.port),
        1,
    );
    assert_ne!(proxied, database.url);
    let app = spawn_app_with(AppOptions {
        overrides: &[("DATABASE_URL", &proxied)],
        database: Some(database),
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let path = format!("/api/v1/projects/{pid}");
    assert_eq!(app.get_as(&owner, &path).await.status, 200);

    // Load all along: clients reading the project through the outage and the recovery.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<JoinHandle<Vec<(u16, String, Duration)>>> = (0..6)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&path));
            let (token, stop) = (owner.access_token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let code = body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    seen.push((status, code, started.elapsed()));
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.cut();
    for request in 0..3 {
        let started = Instant::now();
        let response = app.get_as(&owner, &path).await;
        let elapsed = started.elapsed();
        let error = response.error(503, "SERVICE_UNAVAILABLE");
        assert_eq!(
            error["message"], "the database is unavailable; try again shortly",
            "request {request}"
        );
        assert!(response.header("retry-after").is_some(), "{request}");
        assert!(elapsed < Duration::from_secs(5), "{request}: {elapsed:?}");
    }
    let login = app.login(&owner.email, PASSWORD).await;
    login.error(503, "SERVICE_UNAVAILABLE");
    let ready = app.get("/health/ready").await;
    assert_eq!(
        ready.error(503, "SERVICE_UNAVAILABLE")["details"]["failed"],
        json!(["database"])
    );

    proxy.restore();
    eventually(Duration::from_secs(15), "the app recovers", || async {
        let response = app.get_as(&owner, &path).await;
        if response.status == 200 {
            Ok(())
        } else {
            Err(response.text)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Vec::new();
    for loader in loaders {
        seen.extend(loader.await.unwrap());
    }
    // Under load, every answer was the project or a 503 in the envelope, none slow; the load
    // saw both sides of the outage.
    let odd: Vec<_> = seen
        .iter()
        .filter(|(status, code, _)| {
            !matches!(
                (status, code.as_str()),
                (200, "") | (503, "SERVICE_UNAVAILABLE")
            )
        })
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    let slowest = seen.iter().map(|(_, _, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
    assert!(seen.iter().any(|(status, _, _)| *status == 503));
    assert_eq!(seen.last().map(|(status, _, _)| *status), Some(200));
}

/// The documents' rows and blobs, and what the plan counts of them.
async fn documents_state(app: &TestApp, pid: uuid::Uuid) -> (i64, Vec<String>, i64, i64) {
    use sea_orm::ConnectionTrait;
    let row = app
        .context
        .db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT (SELECT count(*) FROM documents WHERE project_id = $1) AS rows, \
                    documents_count::bigint AS counted, storage_bytes AS bytes \
             FROM subscriptions WHERE project_id = $1",
            [pid.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let blobs = app
        .context
        .blobs
        .list("")
        .await
        .expect("the blob store lists");
    (
        row.try_get("", "rows").unwrap(),
        blobs,
        row.try_get("", "counted").unwrap(),
        row.try_get("", "bytes").unwrap(),
    )
}

#[tokio::test]
async fn with_the_blob_store_gone_uploads_answer_503_and_leave_nothing_half_written() {
    let s3 = crate::storage::start_s3_server().await;
    let upstream: SocketAddr = s3.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = CuttableProxy::start(upstream).await;
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let secret = s3.secret_key.clone();
    let app = spawn_app_with(AppOptions {
        overrides: &[
            ("APP__STORAGE__BACKEND", "s3"),
            ("APP__STORAGE__S3__ENDPOINT", &endpoint),
            ("APP__STORAGE__S3__BUCKET", "documents"),
            ("APP__STORAGE__S3__ACCESS_KEY", &s3.access_key),
            ("APP__STORAGE__S3__SECRET_KEY", &secret),
        ],
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let aid = app.avatar(&owner, pid, "a").await;
    let path = format!("/api/v1/projects/{pid}/avatars/{aid}/documents");
    let kept = app
        .upload(
            &owner,
            &path,
            "kept.md",
            b"# Kept\n\nStored before the outage.".to_vec(),
        )
        .await;
    assert_eq!(kept.status, 202, "{}", kept.text);
    let before = documents_state(&app, pid).await;
    assert_eq!(
        (before.0, before.1.len(), before.2),
        (1, 1, 1),
        "{before:?}"
    );

    proxy.cut();
    for attempt in 0..2 {
        let started = Instant::now();
        let refused = app
            .upload(
                &owner,
                &path,
                &format!("lost-{attempt}.md"),
                vec![b'x'; 300_000],
            )
            .await;
        let error = refused.error(503, "SERVICE_UNAVAILABLE");
        assert!(refused.header("retry-after").is_some(), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
    let ready = app.get("/health/ready").await;
    assert_eq!(
        ready.error(503, "SERVICE_UNAVAILABLE")["details"]["failed"],
        json!(["storage"])
    );

    proxy.restore();
    // Nothing of the refused uploads: no row, no blob, nothing counted against the plan.
    assert_eq!(documents_state(&app, pid).await, before);
    let later = app
        .upload(
            &owner,
            &path,
            "later.md",
            b"# Later\n\nAfter the outage.".to_vec(),
        )
        .await;
    assert_eq!(later.status, 202, "{}", later.text);
    let after = documents_state(&app, pid).await;
    assert_eq!((after.0, after.1.len(), after.2), (2, 2, 2), "{after:?}");
}
