//! Figures for analytics: how many projects live, and their names.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::core::db::SoftDelete;
use crate::core::ids::ProjectId;

use super::super::domain::entities::project;
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
}
