//! Billing: the plan catalogue (seeded), one subscription per project with its current period
//! and counters (tokens used and reserved, avatars, documents, storage), live token
//! reservations, the usage ledger, and the closed periods. Existing projects are backfilled on
//! the plan their `projects.plan` named (else the default) with their current counts, and
//! `projects.plan` goes: the subscription holds the plan.

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
CREATE TABLE plans (
    code text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    name text NOT NULL,
    monthly_token_limit bigint NOT NULL CHECK (monthly_token_limit >= 0),
    max_avatars integer NOT NULL CHECK (max_avatars >= 0),
    max_documents integer NOT NULL CHECK (max_documents >= 0),
    max_storage_mb integer NOT NULL CHECK (max_storage_mb >= 0),
    requests_per_minute integer NOT NULL CHECK (requests_per_minute >= 0),
    is_default boolean NOT NULL DEFAULT false,
    is_public boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX plans_one_default_index ON plans (is_default) WHERE is_default;

INSERT INTO plans (code, name, monthly_token_limit, max_avatars, max_documents, max_storage_mb,
                   requests_per_minute, is_default, is_public, created_at, updated_at)
VALUES ('free', 'Free', 200000, 3, 50, 200, 60, true, true, now(), now()),
       ('standard', 'Standard', 2000000, 10, 500, 2000, 300, false, true, now(), now()),
       ('pro', 'Pro', 10000000, 50, 5000, 20000, 1200, false, true, now(), now()),
       ('enterprise', 'Enterprise', 100000000, 500, 50000, 200000, 6000, false, true, now(), now());

CREATE TABLE subscriptions (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    plan_code text NOT NULL REFERENCES plans (code),
    -- Periods are monthly from here: the n-th ends n months after the anchor.
    period_anchor timestamptz NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    tokens_used bigint NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    tokens_reserved bigint NOT NULL DEFAULT 0 CHECK (tokens_reserved >= 0),
    -- The highest budget threshold (percent) announced in this period.
    threshold_announced smallint NOT NULL DEFAULT 0,
    avatars_count integer NOT NULL DEFAULT 0 CHECK (avatars_count >= 0),
    documents_count integer NOT NULL DEFAULT 0 CHECK (documents_count >= 0),
    storage_bytes bigint NOT NULL DEFAULT 0 CHECK (storage_bytes >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX subscriptions_plan_index ON subscriptions (plan_code);
CREATE INDEX subscriptions_period_end_index ON subscriptions (period_end);

CREATE TABLE token_reservations (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES subscriptions (project_id) ON DELETE CASCADE,
    tokens bigint NOT NULL CHECK (tokens >= 0),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX token_reservations_expiry_index ON token_reservations (expires_at);

CREATE TABLE usage_ledger (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('chat', 'embedding')),
    model text NOT NULL,
    prompt_tokens bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
    total_tokens bigint NOT NULL CHECK (total_tokens >= 0),
    -- Whether it counted against the plan's budget (not: embeddings, the project's own key).
    counted boolean NOT NULL,
    avatar_id uuid,
    conversation_id uuid,
    document_id uuid,
    -- The project's tokens used in the period after this row.
    tokens_used_after bigint NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX usage_ledger_project_index ON usage_ledger (project_id, created_at DESC, id DESC);

CREATE TABLE subscription_periods (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    plan_code text NOT NULL,
    tokens_used bigint NOT NULL,
    PRIMARY KEY (project_id, period_start)
);

INSERT INTO subscriptions (project_id, plan_code, period_anchor, period_start, period_end,
                           avatars_count, documents_count, storage_bytes, created_at, updated_at)
SELECT p.id, coalesce((SELECT code FROM plans WHERE code = p.plan),
                      (SELECT code FROM plans WHERE is_default)),
       now(), now(), now() + interval '1 month',
       (SELECT count(*) FROM avatars a WHERE a.project_id = p.id AND a.deleted_at IS NULL),
       (SELECT count(*) FROM documents d WHERE d.project_id = p.id),
       (SELECT coalesce(sum(d.size_bytes), 0) FROM documents d WHERE d.project_id = p.id),
       now(), now()
FROM projects p WHERE p.deleted_at IS NULL;

-- The plan is the subscription's now.
ALTER TABLE projects DROP COLUMN plan;
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE projects ADD COLUMN plan text NOT NULL DEFAULT 'free'; \
                 UPDATE projects p SET plan = s.plan_code FROM subscriptions s \
                 WHERE s.project_id = p.id; \
                 DROP TABLE subscription_periods; DROP TABLE usage_ledger; \
                 DROP TABLE token_reservations; DROP TABLE subscriptions; DROP TABLE plans;",
            )
            .await?;
        Ok(())
    }
}
