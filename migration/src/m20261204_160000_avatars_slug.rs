//! Avatars get a `slug`: a short name unique among a project's live avatars, by which OpenAI
//! clients name the avatar as a model (`model: "support-bot"`). New avatars take it from their
//! name (`avatars::service`, transliterated); existing ones get it here from the ASCII letters
//! and digits of their name (`avatar` when none, or when the name is shaped like a UUID, which
//! a model name is looked up as first), the project's oldest avatar keeping a repeated one and
//! the others suffixed with their id's last eight hex digits (random in a UUIDv7; the first
//! ones are its timestamp, shared by avatars made in the same minute).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE avatars ADD COLUMN slug text;
WITH words AS (
    SELECT id, project_id, deleted_at, created_at,
           trim(both '-' from left(trim(both '-' from
               regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 55)) AS word
    FROM avatars),
based AS (
    SELECT id, project_id, deleted_at, created_at,
           CASE WHEN word = ''
                  OR word ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                  OR word ~ '^[0-9a-f]{32}$'
                THEN 'avatar' ELSE word END AS base
    FROM words),
numbered AS (
    SELECT id, base, row_number() OVER (PARTITION BY project_id, base, deleted_at IS NULL
                                        ORDER BY created_at, id) AS n
    FROM based)
UPDATE avatars a SET slug = CASE WHEN numbered.n = 1 THEN numbered.base
                                 ELSE numbered.base || '-' || right(replace(a.id::text, '-', ''), 8)
                            END
FROM numbered WHERE numbered.id = a.id;
ALTER TABLE avatars ALTER COLUMN slug SET NOT NULL;
CREATE UNIQUE INDEX avatars_live_slug_key ON avatars (project_id, slug) WHERE deleted_at IS NULL;
"#;

const DOWN: &str = r#"
DROP INDEX avatars_live_slug_key;
ALTER TABLE avatars DROP COLUMN slug;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
