//! Avatars get a `slug`: a short name unique among a project's live avatars, by which OpenAI
//! clients name the avatar as a model (`model: "support-bot"`). New avatars take it from their
//! name (`avatars::service`, transliterated); existing ones get it here from the ASCII letters
//! and digits of their name (`avatar` when none), the project's oldest avatar keeping a
//! repeated one and the others suffixed with their id's first eight digits.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE avatars ADD COLUMN slug text;
WITH based AS (
    SELECT id, project_id, deleted_at, created_at,
           coalesce(nullif(left(trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-',
                                                                  'g')), 64), ''),
                    'avatar') AS base
    FROM avatars),
numbered AS (
    SELECT id, base, row_number() OVER (PARTITION BY project_id, base, deleted_at IS NULL
                                        ORDER BY created_at, id) AS n
    FROM based)
UPDATE avatars a SET slug = CASE WHEN numbered.n = 1 THEN numbered.base
                                 ELSE left(numbered.base, 55) || '-' || left(a.id::text, 8) END
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
