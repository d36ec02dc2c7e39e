//! Database access: the SeaORM pool, units of work (one transaction each), soft-delete
//! helpers, UUID v7 ids and timestamps.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, QueryFilter, Select, TransactionTrait,
};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::core::config::DatabaseSettings;

/// A new primary key: UUID v7, so ids sort by creation time and index well.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// How long a pooled connection may sit idle before it is pinged on checkout.
const PING_IDLE_AFTER: Duration = Duration::from_secs(10);

/// Statements this process's pools have run (SeaORM's count; BEGIN and COMMIT not included).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// How many statements this process has run through [`connect`]'s pools: round trips, for
/// benchmarks that count them per request.
pub fn statements_run() -> u64 {
    STATEMENTS.load(Ordering::Relaxed)
}

/// Opens the connection pool.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.url.expose_secret().to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        // A connection in use is known to be alive; pinging it on every checkout would double
        // the round trips of every query. Only one idle a while (which a restarted server or a
        // proxy may have dropped) is checked first.
        .test_before_acquire_if_idle_for(PING_IDLE_AFTER)
        .sqlx_logging(settings.log_statements)
        .sqlx_logging_level(tracing::log::LevelFilter::Debug);
    let mut connection = Database::connect(options).await?;
    connection.set_metric_callback(|_| {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    });
    Ok(connection)
}

/// The pool plus what must happen after a commit (waking the event dispatcher).
#[derive(Clone, Debug)]
pub struct Db {
    connection: DatabaseConnection,
    committed: Arc<Notify>,
}

impl Db {
    pub fn new(connection: DatabaseConnection) -> Self {
        Db {
            connection,
            committed: Arc::new(Notify::new()),
        }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.connection
    }

    /// Notified after every commit of a unit of work that published events.
    pub fn commit_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// Starts a unit of work. Dropping it without [`UnitOfWork::commit`] rolls back, and with
    /// it every event published inside.
    pub async fn begin(&self) -> Result<UnitOfWork, DbErr> {
        Ok(UnitOfWork {
            transaction: self.connection.begin().await?,
            published_events: false,
            committed: self.committed.clone(),
        })
    }

    /// Connections in use and idle, for `/metrics`.
    pub fn pool_stats(&self) -> PoolStats {
        let pool = self.connection.get_postgres_connection_pool();
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            size,
            idle,
            max: pool.options().get_max_connections(),
        }
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.connection.ping().await
    }
}

impl Deref for Db {
    type Target = DatabaseConnection;
    fn deref(&self) -> &DatabaseConnection {
        &self.connection
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// One transaction: a service method's writes and the events it publishes commit together.
pub struct UnitOfWork {
    transaction: DatabaseTransaction,
    published_events: bool,
    committed: Arc<Notify>,
}

impl UnitOfWork {
    /// Records that the outbox was written, so the dispatcher is woken on commit.
    pub fn mark_published(&mut self) {
        self.published_events = true;
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.transaction.commit().await?;
        if self.published_events {
            self.committed.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.transaction.rollback().await
    }
}

impl Deref for UnitOfWork {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.transaction
    }
}

/// Entities whose rows are hidden, not removed, when a user deletes them.
pub trait SoftDelete: EntityTrait {
    /// The nullable `deleted_at` column.
    fn deleted_at() -> Self::Column;

    /// `SELECT` of rows not deleted: the default for every query a user can reach.
    fn find_live() -> Select<Self> {
        Self::find().filter(Self::deleted_at().is_null())
    }
}

/// Marks the live rows matching `condition` deleted `at` (the app clock's now); returns how
/// many were.
pub async fn soft_delete<E, C>(
    conn: &C,
    at: DateTime<Utc>,
    condition: impl IntoCondition,
) -> Result<u64, DbErr>
where
    E: SoftDelete,
    C: ConnectionTrait,
{
    let result = E::update_many()
        .col_expr(E::deleted_at(), Expr::value(at))
        .filter(E::deleted_at().is_null())
        .filter(condition)
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Brings soft-deleted rows matching `condition` back; returns how many were.
pub async fn restore<E, C>(conn: &C, condition: impl IntoCondition) -> Result<u64, DbErr>
where
    E: SoftDelete,
    C: ConnectionTrait,
{
    let result = E::update_many()
        .col_expr(E::deleted_at(), Expr::value(Option::<DateTime<Utc>>::None))
        .filter(E::deleted_at().is_not_null())
        .filter(condition)
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// True when `error` means the database cannot be reached now (down, restarting, out of
/// connections), rather than that the request or the code is wrong: such failures answer 503
/// with `Retry-After` (see [`crate::core::error::Unavailable`]), never 500.
pub fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match error {
        // Whatever went wrong while connecting (refused, reset, a garbled handshake).
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(sqlx) => match sqlx.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            // Connection exceptions (08), operator intervention: shutdown, crash recovery,
            // "cannot connect now" (57P), too many connections (53300).
            Sqlx::Database(database) => database.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }),
            _ => false,
        },
        RuntimeErr::Internal(_) => false,
    }
}

/// True when `error` is a unique-constraint violation (turned into 409 at the edge).
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
