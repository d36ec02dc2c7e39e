//! The platform-wide and the per-project roles.

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// Stored as text; an unknown stored value is an error when read.
/// The platform-wide role of a user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum PlatformRole {
    #[sea_orm(string_value = "saas_admin")]
    SaasAdmin,
    #[sea_orm(string_value = "user")]
    User,
}

impl PlatformRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformRole::SaasAdmin => "saas_admin",
            PlatformRole::User => "user",
        }
    }
}

// Stored as text; an unknown stored value is an error when read.
/// A member's role in a project, ordered: owner > manager > operator > viewer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ProjectRole {
    #[sea_orm(string_value = "viewer")]
    Viewer,
    #[sea_orm(string_value = "operator")]
    Operator,
    #[sea_orm(string_value = "manager")]
    Manager,
    #[sea_orm(string_value = "owner")]
    Owner,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Viewer => "viewer",
            ProjectRole::Operator => "operator",
            ProjectRole::Manager => "manager",
            ProjectRole::Owner => "owner",
        }
    }
}
