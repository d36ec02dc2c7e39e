//! Usage analytics' read model, fed by chat's events (and a one-time backfill from chat's
//! service): per day and avatar counters, the end users active each day (for distinct counts
//! over any range), the facts already applied (so a retried delivery or the backfill never
//! counts twice), and the backfill's progress. And two indexes of the audit log: by entity
//! (the log's filter), and by the end user its details name (an erasure's scrub).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
CREATE TABLE analytics_daily (
    project_id uuid NOT NULL,
    day date NOT NULL,
    avatar_id uuid NOT NULL,
    messages bigint NOT NULL DEFAULT 0,
    conversations bigint NOT NULL DEFAULT 0,
    answers bigint NOT NULL DEFAULT 0,
    retrieval_only_answers bigint NOT NULL DEFAULT 0,
    failed_answers bigint NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    first_token_ms_sum bigint NOT NULL DEFAULT 0,
    first_token_count bigint NOT NULL DEFAULT 0,
    total_ms_sum bigint NOT NULL DEFAULT 0,
    total_ms_count bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, day, avatar_id)
);
CREATE INDEX analytics_daily_day_index ON analytics_daily (day)
    INCLUDE (project_id, messages, conversations, prompt_tokens, completion_tokens);

CREATE TABLE analytics_active_end_users (
    project_id uuid NOT NULL,
    day date NOT NULL,
    avatar_id uuid NOT NULL,
    end_user_id uuid NOT NULL,
    PRIMARY KEY (project_id, day, avatar_id, end_user_id)
);

CREATE TABLE analytics_applied_facts (
    id uuid PRIMARY KEY,
    applied_at timestamptz NOT NULL
);
CREATE INDEX analytics_applied_facts_time_index ON analytics_applied_facts (applied_at);

CREATE TABLE analytics_backfill (
    source text PRIMARY KEY,
    after_id uuid,
    finished_at timestamptz
);

CREATE INDEX audit_log_entity_index ON audit_log (entity_type, entity_id, occurred_at DESC);
CREATE INDEX audit_log_end_user_index ON audit_log ((details->>'end_user_id'))
    WHERE details ? 'end_user_id';
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX audit_log_entity_index, audit_log_end_user_index; \
                 DROP TABLE analytics_backfill, analytics_applied_facts, \
                 analytics_active_end_users, analytics_daily;",
            )
            .await?;
        Ok(())
    }
}
