//! The integration-test harness: a fresh PostgreSQL database per test, the real app on a
//! random port, and a typed HTTP client. Fixtures that later modules add (users, projects,
//! avatars, ...) live beside this file and build on [`TestApp`].

use std::path::PathBuf;
use std::sync::{Arc, Once};

use actix_web::dev::ServerHandle;
use avatar_platform::app::{AppContext, Application, Registry, RunOptions};
use avatar_platform::core::clock::{Clock, ManualClock, SystemClock};
use avatar_platform::core::config::Settings;
use avatar_platform::core::db::Db;
use reqwest::header::HeaderMap;
use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;
use serde_json::Value;
use tempfile::TempDir;

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The server every test database is created on (`make test` exports it).
fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: run the tests with `make test`, which starts PostgreSQL \
             with pgvector and exports it"
        )
    })
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|index| index + 3).unwrap_or(0);
    let server = match base[authority_start..].find('/') {
        Some(index) => &base[..authority_start + index],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A database of one's own, dropped (with any connections left) when this value drops.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        init();
        let admin = admin_url();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let connection = Database::connect(&admin)
            .await
            .expect("cannot connect to the test PostgreSQL server");
        connection
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("cannot create a test database");
        connection.close().await.ok();
        TestDatabase {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// Connects and applies every migration.
    pub async fn migrated_db(&self) -> Db {
        let connection = Database::connect(&self.url).await.expect("connect");
        migration::Migrator::up(&connection, None)
            .await
            .expect("migrations apply");
        Db::new(connection)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Drop runs outside async context: use a small runtime on its own thread.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let connection = Database::connect(&admin).await?;
                connection
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await?;
                connection.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Settings as the `test` environment gives them, for `database`, with `overrides`
/// (`APP__SECTION__KEY` style) applied.
pub fn test_settings(
    database: &TestDatabase,
    data_dir: &std::path::Path,
    overrides: &[(&str, &str)],
) -> Settings {
    settings_for(&database.url, data_dir, overrides)
}

/// [`test_settings`] for the database at `url`.
pub fn settings_for(url: &str, data_dir: &std::path::Path, overrides: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("APP_ENV".into(), "test".into()),
        ("DATABASE_URL".into(), url.into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
        ("APP__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("APP__SERVER__HTTP_WORKERS".into(), "2".into()),
        ("APP__DATABASE__MAX_CONNECTIONS".into(), "10".into()),
        // Documents are parsed by the real binary, as in production.
        (
            "APP__DOCUMENTS__PARSER_PROGRAM".into(),
            env!("CARGO_BIN_EXE_avatar-platform").into(),
        ),
    ];
    for (key, value) in overrides {
        env.retain(|(existing, _)| existing != key);
        env.push(((*key).into(), (*value).into()));
    }
    Settings::load_from(&config_dir(), &env).expect("test settings load")
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// A running app and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub context: AppContext,
    registry: Arc<Registry>,
    server: Option<ServerHandle>,
    _data_dir: TempDir,
    // Declared last: dropped after the server stopped using it. None: another app's.
    _database: Option<TestDatabase>,
}

impl TestApp {
    /// A second process of the same deployment: another app serving HTTP on this app's
    /// database (which this app keeps).
    pub async fn another_instance(&self) -> TestApp {
        let url = self
            .context
            .settings
            .database
            .url
            .expose_secret()
            .to_owned();
        spawn_app_with(AppOptions {
            shared_database: Some(&url),
            ..AppOptions::default()
        })
        .await
    }

    /// The URL of the app's database.
    pub fn database_url(&self) -> String {
        self.context
            .settings
            .database
            .url
            .expose_secret()
            .to_owned()
    }

    /// A module's service, as the app built it.
    pub fn service<T: Send + Sync + 'static>(&self) -> Arc<T> {
        self.registry.get::<T>().expect("the module is installed")
    }
}

/// Options for [`spawn_app_with`].
#[derive(Default)]
pub struct AppOptions<'a> {
    pub overrides: &'a [(&'a str, &'a str)],
    /// Job workers in the app (default 0: tests that need jobs say so).
    pub workers: usize,
    /// A database the test created (and may reach another way); default: a fresh one.
    pub database: Option<TestDatabase>,
    /// Another app's database (a second process of the same deployment), which that app
    /// keeps: its URL. Default: `database`.
    pub shared_database: Option<&'a str>,
    /// The app's clock, for tests that move time; default: the system's.
    pub clock: Option<Arc<ManualClock>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions<'_>) -> TestApp {
    let database = match (options.database, options.shared_database) {
        (Some(database), _) => Some(database),
        (None, Some(_)) => None,
        (None, None) => Some(TestDatabase::create().await),
    };
    let url = match (&database, options.shared_database) {
        (Some(database), _) => database.url.clone(),
        (None, shared) => shared.unwrap_or_default().to_owned(),
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let settings = settings_for(&url, data_dir.path(), options.overrides);
    let clock: Arc<dyn Clock> = match options.clock {
        Some(clock) => clock,
        None => Arc::new(SystemClock),
    };
    let context = AppContext::connect_with_clock(settings, clock)
        .await
        .expect("the app connects");
    let app = Application::build_with(
        context,
        RunOptions {
            workers: Some(options.workers),
            handle_signals: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("the app starts");
    let port = app.port().expect("an HTTP port");
    let context = app.context().clone();
    let registry = app.registry().clone();
    let server = app.server_handle();
    tokio::spawn(async move {
        if let Err(error) = app.run_until_stopped().await {
            eprintln!("test app stopped with an error: {error:#}");
        }
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        context,
        registry,
        server,
        _data_dir: data_dir,
        _database: database,
    }
}

/// A second process of the platform on a test's database: job workers and background loops,
/// no HTTP (what `avatar-platform worker` runs).
pub struct WorkerApp {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<()>,
    _data_dir: TempDir,
}

/// Starts a [`WorkerApp`] on the database at `url`, with `overrides`.
pub async fn spawn_worker(url: &str, overrides: &[(&str, &str)]) -> WorkerApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let settings = settings_for(url, data_dir.path(), overrides);
    let context = AppContext::connect(settings)
        .await
        .expect("the worker connects");
    let app = Application::build_with(
        context,
        RunOptions {
            http: false,
            workers: Some(1),
            handle_signals: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("the worker starts");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(async move {
        let _ = stopped.await;
        app.shutdown().await;
    });
    WorkerApp {
        stop: Some(stop),
        running,
        _data_dir: data_dir,
    }
}

impl WorkerApp {
    /// Stops it as a SIGTERM would: running jobs finish, loops end and let go of what they hold.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.running).await;
    }
}

/// A response read whole: status, headers and JSON body (Null when not JSON).
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the error envelope and returns its `error` object.
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let error = &self.json["error"];
        assert_eq!(
            error["code"], code,
            "unexpected error code; body: {}",
            self.text
        );
        assert!(
            error["message"].is_string(),
            "message missing: {}",
            self.text
        );
        assert!(error.get("field").is_some(), "field missing: {}", self.text);
        assert!(
            error["details"].is_object(),
            "details missing: {}",
            self.text
        );
        error
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.send(self.client.post(self.url(path)).json(body)).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The server's worker threads outlive the test's runtime unless told to stop; the
        // command is sent at once, the returned future only waits for completion.
        if let Some(server) = self.server.take() {
            drop(server.stop(false));
        }
    }
}

/// How often [`eventually`] looks again.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Waits, if need be, until the current `window` (aligned to the Unix epoch, as the rate
/// limits' fixed windows are) has at least a quarter left, so that a few requests counted
/// against a limit all fall in one window.
pub async fn early_in_window(window: std::time::Duration) {
    let window = window.as_secs_f64();
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % window;
    if into > window * 0.75 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(window - into + 0.5)).await;
    }
}

/// Polls `probe` until it answers `Ok(value)` and returns the value; fails the test after
/// `within`, saying what was awaited and what `probe` last saw (its `Err`). The one "wait
/// until" of the suite: no test sleeps a fixed time and hopes.
pub async fn eventually<T, Seen, Probe, Fut>(
    within: std::time::Duration,
    awaited: &str,
    mut probe: Probe,
) -> T
where
    Seen: std::fmt::Debug,
    Probe: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Seen>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{awaited}: not within {within:?}; last seen: {seen:?}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
