//! Where people talk to avatars. One type for conversations, end users and their events.

use std::fmt;
use std::str::FromStr;

use sea_orm::{DeriveActiveEnum, EnumIter, Iterable};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a conversation takes place (stored as text).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Channel {
    /// Staff trying an avatar in the dashboard.
    #[sea_orm(string_value = "playground")]
    Playground,
    /// The public chat API.
    #[sea_orm(string_value = "api")]
    Api,
    #[sea_orm(string_value = "telegram")]
    Telegram,
}

impl Channel {
    /// The channels end users come through (staff use the playground).
    pub const OF_END_USERS: [Channel; 2] = [Channel::Api, Channel::Telegram];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Playground => "playground",
            Channel::Api => "api",
            Channel::Telegram => "telegram",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;

    fn from_str(value: &str) -> Result<Channel, String> {
        Channel::iter()
            .find(|channel| channel.as_str() == value)
            .ok_or_else(|| format!("unknown channel {value:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::Channel;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for channel in [Channel::Playground, Channel::Api, Channel::Telegram] {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(
                serde_json::to_value(channel).unwrap(),
                serde_json::json!(channel.as_str())
            );
        }
        assert!("sms".parse::<Channel>().is_err());
    }
}
