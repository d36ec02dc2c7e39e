//! What every benchmark shares: a database of its own on the `DATABASE_URL` server, created
//! before the run and dropped after it, whatever the outcome.

use std::future::Future;

use sea_orm::{ConnectionTrait, Database};

/// Runs `bench` with the URL of a fresh database named `<prefix>_<uuid>`.
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
    admin_conn
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    outcome
}
