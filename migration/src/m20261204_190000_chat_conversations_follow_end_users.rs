//! An end user's conversations are erased with them by a foreign key (`ON DELETE CASCADE`)
//! instead of by the chat module's subscriber to `EndUserDeleted`. The subscriber ran after the
//! erasing transaction, so a public request that had found the end user just before could start
//! a conversation after the subscriber's sweep, and the erased person's words stayed. With the
//! key, the insert either commits first and is erased with the end user, or finds them gone
//! and fails.
//!
//! Conversations of end users already erased are removed here, and so are the deliveries still
//! queued for the retired subscriber.

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
DELETE FROM conversations c
 WHERE c.end_user_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM end_users e WHERE e.id = c.end_user_id);
ALTER TABLE conversations
    ADD CONSTRAINT conversations_end_user_id_fkey
    FOREIGN KEY (end_user_id) REFERENCES end_users (id) ON DELETE CASCADE;
DELETE FROM event_deliveries WHERE subscriber = 'chat.erase_end_user_conversations';
"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE conversations DROP CONSTRAINT conversations_end_user_id_fkey",
            )
            .await?;
        Ok(())
    }
}
