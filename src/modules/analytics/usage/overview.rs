//! The platform at a glance, for the saas_admin: what exists now (from each owning module's
//! service) and the traffic of a range (from the read model), with the projects that used the
//! most tokens.

use chrono::NaiveDate;
use sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::error::Failure;
use crate::core::ids::ProjectId;

use super::super::domain::errors::AnalyticsError;
use super::super::service::AnalyticsService;
use super::count;
use super::range::DayRange;

/// Projects listed by `top_projects`.
pub const TOP_PROJECTS: u64 = 10;

/// Chat traffic over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Traffic {
    pub messages: u64,
    pub conversations: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectTraffic {
    #[schema(value_type = uuid::Uuid)]
    pub project_id: ProjectId,
    /// None if the project no longer exists at all.
    pub name: Option<String>,
    #[serde(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Accounts, active or not (now).
    pub users: u64,
    /// Live projects, avatars and documents (now).
    pub projects: u64,
    pub avatars: u64,
    pub documents: u64,
    /// Traffic in the range.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// The projects with the most tokens (prompt + completion) in the range, most first.
    pub top_projects: Vec<ProjectTraffic>,
}

#[derive(FromQueryResult)]
struct Ranked {
    project_id: Uuid,
    messages: i64,
    conversations: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    all_messages: i64,
    all_conversations: i64,
    all_prompt_tokens: i64,
    all_completion_tokens: i64,
}

fn traffic(messages: i64, conversations: i64, prompt: i64, completion: i64) -> Traffic {
    Traffic {
        messages: count(Some(messages)),
        conversations: count(Some(conversations)),
        prompt_tokens: count(Some(prompt)),
        completion_tokens: count(Some(completion)),
    }
}

fn failure(error: impl Into<Failure>) -> AnalyticsError {
    AnalyticsError::Common(error.into())
}

impl AnalyticsService {
    pub async fn overview(&self, range: DayRange) -> Result<Overview, AnalyticsError> {
        // One pass over the range: per project, with the platform's sums as window totals
        // (taken before the limit, so every row carries them).
        let rows = Ranked::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH per_project AS ( \
                 SELECT project_id, sum(messages)::bigint AS messages, \
                        sum(conversations)::bigint AS conversations, \
                        sum(prompt_tokens)::bigint AS prompt_tokens, \
                        sum(completion_tokens)::bigint AS completion_tokens \
                 FROM analytics_daily WHERE day >= $1 AND day < $2 GROUP BY project_id \
             ) \
             SELECT *, sum(messages) OVER ()::bigint AS all_messages, \
                    sum(conversations) OVER ()::bigint AS all_conversations, \
                    sum(prompt_tokens) OVER ()::bigint AS all_prompt_tokens, \
                    sum(completion_tokens) OVER ()::bigint AS all_completion_tokens \
             FROM per_project \
             ORDER BY prompt_tokens + completion_tokens DESC, project_id LIMIT $3",
            [
                range.from.into(),
                range.to.into(),
                i64::try_from(TOP_PROJECTS).unwrap_or(i64::MAX).into(),
            ],
        ))
        .all(self.db.connection())
        .await?;
        let total = rows.first().map_or_else(Traffic::default, |row| {
            traffic(
                row.all_messages,
                row.all_conversations,
                row.all_prompt_tokens,
                row.all_completion_tokens,
            )
        });
        let ids: Vec<ProjectId> = rows
            .iter()
            .map(|row| ProjectId::from_uuid(row.project_id))
            .collect();
        let sources = &self.sources;
        let mut names = sources.projects.names(&ids).await.map_err(failure)?;
        let top_projects = rows
            .iter()
            .map(|row| {
                let project_id = ProjectId::from_uuid(row.project_id);
                ProjectTraffic {
                    project_id,
                    name: names.remove(&project_id),
                    traffic: traffic(
                        row.messages,
                        row.conversations,
                        row.prompt_tokens,
                        row.completion_tokens,
                    ),
                }
            })
            .collect();
        Ok(Overview {
            from: range.from,
            to: range.to,
            users: sources.auth.count_users().await.map_err(failure)?,
            projects: sources.projects.count_live().await.map_err(failure)?,
            avatars: sources.avatars.count_live().await.map_err(failure)?,
            documents: sources.documents.count_all().await.map_err(failure)?,
            traffic: total,
            top_projects,
        })
    }
}
