//! The telegram module's tables, failures and events.

pub(in crate::modules::telegram) mod entities;
pub(in crate::modules::telegram) mod errors;
pub(in crate::modules::telegram) mod events;

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How Telegram's updates reach the platform.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    /// Telegram posts them to `/api/v1/telegram/webhook/{bot_id}`.
    #[sea_orm(string_value = "webhook")]
    Webhook,
    /// The platform asks with `getUpdates` (no public address needed).
    #[sea_orm(string_value = "polling")]
    Polling,
}

/// Whether the bot works.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Serialize, Deserialize, ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum BotStatus {
    #[sea_orm(string_value = "active")]
    Active,
    /// The last call to Telegram failed (`last_error` says how); it is tried again.
    #[sea_orm(string_value = "failing")]
    Failing,
}
