//! Figures for analytics and notifications: how many projects live, their names, and who
//! holds a role in one.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::core::auth::ProjectRole;
use crate::core::db::SoftDelete;
use crate::core::ids::{ProjectId, UserId};

use super::super::domain::entities::{member, project};
use super::super::domain::errors::ProjectsError;
use super::ProjectsService;

impl ProjectsService {
    /// Live projects on the platform.
    pub async fn count_live(&self) -> Result<u64, ProjectsError> {
        Ok(project::Entity::find_live()
            .count(self.db.connection())
            .await?)
    }

    /// The names of those of `ids` that exist (deleted ones included: their figures remain).
    pub async fn names(
        &self,
        ids: &[ProjectId],
    ) -> Result<HashMap<ProjectId, String>, ProjectsError> {
        Ok(project::Entity::find()
            .filter(project::Column::Id.is_in(ids.iter().copied()))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| (row.id, row.name))
            .collect())
    }

    /// The members of `project_id` holding one of `roles` (who hears of what happens there).
    pub async fn member_ids(
        &self,
        project_id: ProjectId,
        roles: &[ProjectRole],
    ) -> Result<Vec<UserId>, ProjectsError> {
        Ok(member::Entity::find()
            .filter(member::Column::ProjectId.eq(project_id))
            .filter(member::Column::Role.is_in(roles.iter().copied()))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|row| row.user_id)
            .collect())
    }
}
