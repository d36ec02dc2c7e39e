//! Storing updates once per (bot, `update_id`), many by one statement, with one job that
//! handles those that were new. Webhook calls that arrive together are written together by the
//! [`AckWriter`]; a polling batch is one statement in its transaction.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::postgres::{PgConnection, Postgres};
use sea_orm::sqlx::{self, Row as _};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::core::db::Db;
use crate::core::ids::ProjectId;
use crate::core::jobs::{NewTask, task_row};

use super::super::tasks::HandleUpdates;
use super::handling::CHATS_PER_JOB;

/// An update to store: whose it is and its JSON as received.
pub(super) struct NewUpdate {
    pub bot_id: i64,
    pub update_id: i64,
    pub project_id: ProjectId,
    pub payload: Box<RawValue>,
    pub received_at: DateTime<Utc>,
}

/// One element of the statement's batch; `payload` goes as received, never re-parsed here.
#[derive(Serialize)]
struct Row<'a> {
    bot_id: i64,
    update_id: i64,
    project_id: ProjectId,
    payload: &'a RawValue,
    received_at: DateTime<Utc>,
}

/// Stores the updates not seen before by one statement on `conn` (a transaction, or the pool),
/// with [`HandleUpdates`] jobs for them: all or nothing. An update `updates` holds twice is
/// stored once. Returns those that were new.
///
/// Jobs per statement rather than per update: each job is a row and five index entries in
/// `fang_tasks`, which cost PostgreSQL more than the update itself. A job takes the updates of
/// up to [`CHATS_PER_JOB`] chats (a chat's updates are never split, so that they are answered
/// in order), which bounds how long it runs. The lists are built by the statement from the
/// rows it inserted, the rest of the jobs by [`task_row`].
pub(super) async fn store_batch(
    conn: &impl ConnectionTrait,
    updates: &[NewUpdate],
) -> Result<HashSet<(i64, i64)>, DbErr> {
    let Some(statement) = BatchStatement::of(updates)? else {
        return Ok(HashSet::new());
    };
    let stored = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            STORE_BATCH,
            [
                statement.batch.into(),
                statement.job.metadata.into(),
                statement.job.task_type.into(),
                statement.job.scheduled_at.into(),
                statement.chats_per_job.into(),
            ],
        ))
        .await?;
    stored
        .iter()
        .map(|row| Ok((row.try_get("", "bot_id")?, row.try_get("", "update_id")?)))
        .collect()
}

/// [`store_batch`] on a connection the caller holds (the [`AckWriter`]'s), through sqlx.
async fn store_batch_on(
    conn: &mut PgConnection,
    updates: &[NewUpdate],
) -> Result<HashSet<(i64, i64)>, DbErr> {
    let Some(statement) = BatchStatement::of(updates)? else {
        return Ok(HashSet::new());
    };
    let stored = sqlx::query(STORE_BATCH)
        .bind(statement.batch)
        .bind(sqlx::types::Json(statement.job.metadata))
        .bind(statement.job.task_type)
        .bind(statement.job.scheduled_at)
        .bind(statement.chats_per_job)
        .fetch_all(conn)
        .await
        .map_err(sqlx_error)?;
    stored
        .iter()
        .map(|row| {
            let key = (row.try_get("bot_id")?, row.try_get("update_id")?);
            Ok::<_, sqlx::Error>(key)
        })
        .collect::<Result<_, _>>()
        .map_err(sqlx_error)
}

/// A sqlx error as SeaORM reports it (so that `core::db::is_unavailable` reads it the same).
fn sqlx_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(error.into()))
}

/// Unpacks the batch (`$1`), inserts the updates not stored before and a task per
/// `$5` chats of them (`$2`–`$4`: the task as [`task_row`] makes it, without its updates),
/// and returns those that were new.
const STORE_BATCH: &str = "WITH input AS ( \
         SELECT DISTINCT ON (bot_id, update_id) * \
         FROM jsonb_to_recordset($1::jsonb) AS t(bot_id bigint, \
             update_id bigint, project_id uuid, payload jsonb, received_at timestamptz) \
     ), stored AS ( \
         INSERT INTO telegram_updates (bot_id, update_id, project_id, payload, \
             received_at) \
         SELECT bot_id, update_id, project_id, payload, received_at FROM input \
         ON CONFLICT DO NOTHING \
         RETURNING bot_id, update_id, payload #>> '{message,chat,id}' AS chat \
     ), jobs AS ( \
         INSERT INTO fang_tasks (id, metadata, task_type, scheduled_at) \
         SELECT gen_random_uuid(), $2::jsonb || jsonb_build_object('updates', \
             jsonb_agg(jsonb_build_array(bot_id, update_id) \
                 ORDER BY bot_id, update_id)), $3, $4 \
         FROM (SELECT bot_id, update_id, \
                   (dense_rank() OVER (ORDER BY bot_id, chat) - 1) / $5 AS part \
               FROM stored) by_chat \
         GROUP BY part \
     ) \
     SELECT bot_id, update_id FROM stored";

/// The parameters of [`STORE_BATCH`] for some updates.
struct BatchStatement {
    /// The updates as one JSON array; each `payload` as received, never re-parsed here.
    batch: String,
    /// The job, as serialised with no updates; the statement sets `updates`.
    job: NewTask,
    chats_per_job: i64,
}

impl BatchStatement {
    fn of(updates: &[NewUpdate]) -> Result<Option<Self>, DbErr> {
        let Some(first) = updates.first() else {
            return Ok(None);
        };
        let rows: Vec<Row> = updates
            .iter()
            .map(|update| Row {
                bot_id: update.bot_id,
                update_id: update.update_id,
                project_id: update.project_id,
                payload: &update.payload,
                received_at: update.received_at,
            })
            .collect();
        let batch =
            serde_json::to_string(&rows).map_err(|error| DbErr::Custom(error.to_string()))?;
        Ok(Some(BatchStatement {
            batch: without_refused_escapes(batch),
            job: task_row(&HandleUpdates { updates: vec![] }, first.received_at)?,
            chats_per_job: i64::try_from(CHATS_PER_JOB).unwrap_or(i64::MAX),
        }))
    }
}

/// `json` with the escapes PostgreSQL's jsonb refuses made `\ufffd`: U+0000, which Telegram
/// sends that way when a user types it, and a UTF-16 surrogate without its pair (the webhook
/// checks the JSON's shape, not its escapes). Refused, the update would fail again at every
/// retry. (An escaped backslash followed by `u0000` is text, and stays.)
pub fn without_refused_escapes(json: String) -> String {
    let bytes = json.as_bytes();
    let surrogate = bytes.windows(4).any(|window| {
        window[..2] == *b"\\u"
            && window[2].eq_ignore_ascii_case(&b'd')
            && matches!(window[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    });
    if !surrogate && !json.contains("\\u0000") {
        return json;
    }
    const REPLACEMENT: &str = "\\ufffd";
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let length = match unicode_escape(escape) {
            Some(0 | 0xDC00..=0xDFFF) => {
                out.push_str(REPLACEMENT);
                6
            }
            // A high surrogate is whole only with a low one right after it.
            Some(0xD800..=0xDBFF) => match unicode_escape(&escape[6..]) {
                Some(0xDC00..=0xDFFF) => {
                    out.push_str(&escape[..12]);
                    12
                }
                _ => {
                    out.push_str(REPLACEMENT);
                    6
                }
            },
            _ => {
                // `\` and the one character it escapes; a `\u` escape's hex digits follow as
                // text.
                let length = 1 + escape[1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&escape[..length]);
                length
            }
        };
        rest = &escape[length..];
    }
    out.push_str(rest);
    out
}

/// The UTF-16 code unit of the `\u` escape (four hex digits, e.g. `\ud800`) `text` starts with.
fn unicode_escape(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("\\u")?.get(..4)?;
    if !digits.bytes().all(|digit| digit.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// The most updates one statement carries.
const MAX_BATCH: usize = 256;

/// A webhook call waiting for its update to be stored: whether it was new.
struct Pending {
    update: NewUpdate,
    reply: oneshot::Sender<Result<bool, DbErr>>,
}

/// Webhook calls' updates, stored together: group commit. Each call queues its update and is
/// answered once the statement that stores it has committed. One statement runs at a time;
/// the updates that arrive meanwhile go together in the next. So with no load an update goes
/// alone at once (there is no timer), and under load a statement carries what arrived during
/// the one before. If a statement fails, its updates are stored one by one, so that one
/// update PostgreSQL refuses fails only its own call.
///
/// One writer per HTTP worker thread, each keeping one connection of the pool while updates
/// keep coming (and for [`KEEP_CONNECTION_IDLE`] after): its statements go to one PostgreSQL
/// backend, warm, rather than each to the pool's least recently used connection. More statements at once per thread were measured slower:
/// they split the same updates into smaller batches, and PostgreSQL's work per statement is
/// what the acknowledgements are bound by (docs/benchmarks.md).
pub(super) struct AckWriter {
    db: Db,
    /// To the writer's task. Replaced when that task is gone: a thread's runtime that ends
    /// takes its tasks with it, and a new thread may be handed this thread's writer.
    queue: Mutex<mpsc::UnboundedSender<Pending>>,
    stats: Arc<AckStats>,
}

#[derive(Default)]
struct AckStats {
    statements: AtomicU64,
    updates: AtomicU64,
}

impl AckWriter {
    /// Starts the writer's task (on the current runtime); it ends when the writer is dropped.
    pub(super) fn start(db: Db) -> Self {
        let stats = Arc::new(AckStats::default());
        let queue = Mutex::new(spawn_writer(&db, &stats));
        AckWriter { db, queue, stats }
    }

    /// Stores `update` with the next statement; whether it was new.
    pub(super) async fn store(&self, update: NewUpdate) -> Result<bool, DbErr> {
        let (reply, answer) = oneshot::channel();
        let gone = || DbErr::Custom("the webhook writer stopped".to_owned());
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.is_closed() {
                *queue = spawn_writer(&self.db, &self.stats);
            }
            queue.send(Pending { update, reply }).map_err(|_| gone())?;
        }
        answer.await.map_err(|_| gone())?
    }

    /// (statements run, updates they carried) since start.
    pub(super) fn stats(&self) -> (u64, u64) {
        (
            self.stats.statements.load(Ordering::Relaxed),
            self.stats.updates.load(Ordering::Relaxed),
        )
    }
}

fn spawn_writer(db: &Db, stats: &Arc<AckStats>) -> mpsc::UnboundedSender<Pending> {
    let (queue, pending) = mpsc::unbounded_channel();
    tokio::spawn(run(db.clone(), pending, stats.clone()));
    queue
}

/// How long a writer keeps its connection with nothing to write.
const KEEP_CONNECTION_IDLE: Duration = Duration::from_secs(5);

async fn run(db: Db, mut pending: mpsc::UnboundedReceiver<Pending>, stats: Arc<AckStats>) {
    // The writer's connection, kept while updates keep coming: one PostgreSQL backend stays
    // busy with this thread's statements instead of the pool's least recently used connection
    // taking each one in turn (docs/benchmarks.md).
    let mut held: Option<PoolConnection<Postgres>> = None;
    loop {
        let first = if held.is_some() {
            match tokio::time::timeout(KEEP_CONNECTION_IDLE, pending.recv()).await {
                Ok(first) => first,
                Err(_) => {
                    held = None;
                    continue;
                }
            }
        } else {
            pending.recv().await
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        flush(&db, &mut held, batch, &stats).await;
    }
}

/// One statement for `batch` on the writer's connection (taken from the pool when it has
/// none), then every call answered. If the statement fails, the connection is given up and
/// each update is stored alone, through the pool. Of the calls that sent the same update, only
/// the first can learn it was new.
async fn flush(
    db: &Db,
    held: &mut Option<PoolConnection<Postgres>>,
    batch: Vec<Pending>,
    stats: &AckStats,
) {
    stats.statements.fetch_add(1, Ordering::Relaxed);
    stats
        .updates
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let (updates, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|Pending { update, reply }| (update, reply))
        .unzip();
    let together = match held {
        Some(conn) => store_batch_on(conn, &updates).await,
        None => match db
            .connection()
            .get_postgres_connection_pool()
            .acquire()
            .await
        {
            Ok(conn) => store_batch_on(held.insert(conn), &updates).await,
            Err(error) => Err(sqlx_error(error)),
        },
    };
    // A call that went away (its client hung up) no longer needs its answer.
    match together {
        Ok(mut stored) => {
            for (update, reply) in updates.iter().zip(replies) {
                let _ = reply.send(Ok(stored.remove(&(update.bot_id, update.update_id))));
            }
        }
        Err(error) => {
            // Whatever broke, this connection is not trusted again: closed, not pooled.
            if let Some(mut conn) = held.take() {
                conn.close_on_drop();
            }
            if updates.len() == 1 {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
                return;
            }
            tracing::warn!(%error, updates = updates.len(), "storing webhook updates together failed; storing each alone");
            for (update, reply) in updates.iter().zip(replies) {
                let alone = store_batch(db.connection(), std::slice::from_ref(update)).await;
                let _ = reply.send(alone.map(|stored| !stored.is_empty()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_refused_escapes;

    #[test]
    fn nul_escapes_become_replacement_characters_and_nothing_else_changes() {
        let json = serde_json::to_string(&serde_json::json!({
            "text": "a\u{0}b \\u0000 c\u{1}\"",
            "other": "\u{e9}\\",
        }))
        .unwrap();
        let cleaned = without_refused_escapes(json);
        let value: serde_json::Value = serde_json::from_str(&cleaned).unwrap();
        assert_eq!(value["text"], "a\u{fffd}b \\u0000 c\u{1}\"");
        assert_eq!(value["other"], "\u{e9}\\");
        let plain = r#"{"text": "no escapes at all"}"#.to_owned();
        assert_eq!(without_refused_escapes(plain.clone()), plain);
    }

    #[test]
    fn surrogates_without_their_pair_become_replacement_characters() {
        // Found by the telegram fuzz target: the webhook took them, jsonb refused them ("invalid
        // input syntax for type json"), and Telegram delivered the update again and again.
        let found = without_refused_escapes(
            r#"{"update_id": 8, "message": {"text": "Z\u00fcrich \u0000 \ud41d\ude00"}}"#
                .to_owned(),
        );
        let found: serde_json::Value = serde_json::from_str(&found).unwrap();
        assert_eq!(
            found["message"]["text"],
            "Z\u{fc}rich \u{fffd} \u{d41d}\u{fffd}"
        );
        let cleaned = without_refused_escapes(
            r#"{"a": "\ud800", "b": "x\uDC00y", "c": "\ud83d\ude00", "d": "\ud83d\u0041",
                "e": "\\ud800", "f": "\ud83d", "g": "\ud83d\\ude00"}"#
                .to_owned(),
        );
        let value: serde_json::Value = serde_json::from_str(&cleaned).unwrap();
        assert_eq!(value["a"], "\u{fffd}");
        assert_eq!(value["b"], "x\u{fffd}y");
        assert_eq!(value["c"], "\u{1f600}");
        assert_eq!(value["d"], "\u{fffd}A");
        assert_eq!(value["e"], "\\ud800");
        assert_eq!(value["f"], "\u{fffd}");
        assert_eq!(value["g"], "\u{fffd}\\ude00");
        let pair = r#"{"text": "\ud83d\ude00 \u00e9"}"#.to_owned();
        assert_eq!(without_refused_escapes(pair.clone()), pair);
    }
}
