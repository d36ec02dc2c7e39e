//! The platform as real processes: the binary `cargo test` built, started as `serve` and
//! `worker` on a test database and a shared blob directory, killed with SIGKILL and started
//! again. An in-process app on the same database (with no job workers) makes the fixtures and
//! reads the database; requests go to whichever process [`Deployment::through`] names.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{AppOptions, TestApp, TestDatabase, eventually, spawn_app_with};

/// Settings every process of a deployment shares: a dead worker's tasks and documents are
/// noticed within seconds (not the production minutes), and processing is logged as JSON so a
/// test can tell which process handled what.
const FAST_RECOVERY: &[(&str, &str)] = &[
    ("APP__JOBS__STALE_AFTER_SECS", "3"),
    ("APP__JOBS__SWEEPER_CRON", "* * * * * *"),
    ("APP__DOCUMENTS__HEARTBEAT_SECS", "1"),
    ("APP__DOCUMENTS__STALE_AFTER_SECS", "3"),
    ("APP__DOCUMENTS__RECOVERY_CRON", "* * * * * *"),
];

/// One database, one blob directory, and the processes running on them.
pub struct Deployment {
    /// The in-process app: fixtures, database reads, and the HTTP address requests go to.
    pub control: TestApp,
    env: Vec<(String, String)>,
    _blobs: TempDir,
    logs: TempDir,
}

/// A running `avatar-platform` process; killed (SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    /// `http://127.0.0.1:port` for `serve`.
    pub address: Option<String>,
    child: tokio::process::Child,
    log: PathBuf,
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Deployment {
    /// A fresh database and blob directory with `settings` (`APP__...` pairs) for every process.
    pub async fn new(settings: &[(&str, &str)]) -> Deployment {
        let blobs = tempfile::tempdir().expect("a blob directory");
        let logs = tempfile::tempdir().expect("a log directory");
        let root = blobs.path().display().to_string();
        let mut env: Vec<(String, String)> = FAST_RECOVERY
            .iter()
            .chain(settings)
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        env.push(("APP__STORAGE__FILESYSTEM__ROOT".into(), root));
        let overrides: Vec<(&str, &str)> = env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let control = spawn_app_with(AppOptions {
            overrides: &overrides,
            database: Some(TestDatabase::create().await),
            workers: 0,
            ..AppOptions::default()
        })
        .await;
        Deployment {
            control,
            env,
            _blobs: blobs,
            logs,
        }
    }

    fn command(&self, name: &str, args: &[&str]) -> (tokio::process::Command, PathBuf) {
        let log = self.logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_avatar-platform"));
        command
            .args(args)
            .env("APP_ENV", "test")
            .env("DATABASE_URL", self.control.database_url())
            .env("DATA_DIR", self.logs.path())
            .env("APP__TELEMETRY__LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log file"))
            .stderr(file)
            .kill_on_drop(true);
        (command, log)
    }

    /// `avatar-platform serve` with `workers` job workers, once it answers `/health/ready`.
    pub async fn serve(&self, name: &str, workers: usize) -> Process {
        let address = format!("127.0.0.1:{}", free_port());
        let workers = workers.to_string();
        let (mut command, log) =
            self.command(name, &["serve", "--bind", &address, "--workers", &workers]);
        let child = command.spawn().expect("the platform starts");
        let process = Process {
            name: name.to_owned(),
            address: Some(format!("http://{address}")),
            child,
            log,
        };
        let ready = format!("http://{address}/health/ready");
        eventually(
            Duration::from_secs(60),
            &format!("{name} is ready"),
            || async {
                match self.control.client.get(&ready).send().await {
                    Ok(response) if response.status() == 200 => Ok(()),
                    Ok(response) => Err(format!("{}", response.status())),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await;
        process
    }

    /// `avatar-platform worker` with `workers` job workers.
    pub fn worker(&self, name: &str, workers: usize) -> Process {
        let workers = workers.to_string();
        let (mut command, log) = self.command(name, &["worker", "--workers", &workers]);
        Process {
            name: name.to_owned(),
            address: None,
            child: command.spawn().expect("the worker starts"),
            log,
        }
    }

    /// Requests of the control app's fixtures go to `process` from now on.
    pub fn through(&mut self, process: &Process) {
        self.control.address = process.address.clone().expect("a serving process");
    }

    /// The keys in the shared blob store (as the control app's store lists them).
    pub async fn blobs(&self) -> Vec<String> {
        let mut keys = self
            .control
            .context
            .blobs
            .list("")
            .await
            .expect("the blobs");
        keys.sort();
        keys
    }

    pub async fn rows(&self, sql: &str) -> Vec<sea_orm::QueryResult> {
        self.control
            .context
            .db
            .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .expect("the query runs")
    }

    pub async fn number(&self, sql: &str) -> i64 {
        self.rows(sql).await[0]
            .try_get("", "n")
            .expect("a column n")
    }
}

impl Process {
    /// SIGKILL: no shutdown, nothing flushed, its tasks and leases left as they were.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("the process is killed");
        self.child.wait().await.expect("the process ends");
    }

    /// Its log (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The documents this process logged as processed.
    pub fn processed(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["fields"]["message"] == "document processed")
            .filter_map(|line| line["fields"]["document_id"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of {} ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
