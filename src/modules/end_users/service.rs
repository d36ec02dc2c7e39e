//! End users: the people who talk to a project's avatars through a channel (the public API,
//! Telegram). Created on first contact, found again by `(channel, external_id)`; operators list,
//! block and unblock them; deleting one erases them and, in the same transaction, their
//! conversations and messages (a foreign key with `ON DELETE CASCADE`, so a conversation being
//! started meanwhile is either erased too or refused).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::extension::postgres::PgExpr;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Statement,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::channel::Channel;
use crate::core::clock::Clock;
use crate::core::db::Db;
use crate::core::events::EventBus;
use crate::core::ids::{EndUserId, ProjectId};
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::events::DomainEvent;

use super::domain::entities::end_user;
use super::domain::errors::EndUsersError;
use super::domain::events::EndUsersEvent;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndUserView {
    #[schema(value_type = uuid::Uuid)]
    pub id: EndUserId,
    #[schema(value_type = String)]
    pub channel: Channel,
    pub external_id: String,
    pub display_name: Option<String>,
    #[schema(value_type = Object)]
    pub raw_profile: Value,
    #[schema(value_type = Object)]
    pub consent_flags: Value,
    pub messages_count: i32,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub blocked: bool,
    pub blocked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn view(model: &end_user::Model) -> EndUserView {
    EndUserView {
        id: model.id,
        channel: model.channel,
        external_id: model.external_id.clone(),
        display_name: model.display_name.clone(),
        raw_profile: model.raw_profile.clone(),
        consent_flags: model.consent_flags.clone(),
        messages_count: model.messages_count,
        last_seen_at: model.last_seen_at,
        blocked: model.blocked_at.is_some(),
        blocked_at: model.blocked_at,
        created_at: model.created_at,
    }
}

/// Who is talking, as a channel introduces them.
#[derive(Debug, Clone)]
pub struct Contact {
    /// One of [`Channel::OF_END_USERS`].
    pub channel: Channel,
    pub external_id: String,
    pub display_name: Option<String>,
    /// What the channel knows of them (Telegram's user object, ...), kept as given.
    pub raw_profile: Option<Value>,
}

/// List filters.
#[derive(Debug, Clone, Default)]
pub struct EndUserFilter {
    /// Part of the external id or display name, case-insensitive.
    pub q: Option<String>,
    pub channel: Option<Channel>,
    pub blocked: Option<bool>,
}

pub struct EndUsersService {
    db: Db,
    bus: EventBus<DomainEvent>,
    clock: Arc<dyn Clock>,
}

impl EndUsersService {
    pub fn new(db: Db, bus: EventBus<DomainEvent>, clock: Arc<dyn Clock>) -> Self {
        EndUsersService { db, bus, clock }
    }

    /// Whether `contact` can be stored: checked before anything is written.
    pub fn check_contact(contact: &Contact) -> Result<(), EndUsersError> {
        if !Channel::OF_END_USERS.contains(&contact.channel) {
            return Err(EndUsersError::internal(format!(
                "end users do not come through the {} channel",
                contact.channel
            )));
        }
        let external_id = contact.external_id.trim();
        if external_id.is_empty() || external_id.chars().count() > 200 {
            return Err(EndUsersError::invalid(
                "end_user.external_id",
                "must be 1 to 200 characters",
            ));
        }
        Ok(())
    }

    /// The end user behind `contact` if they were seen before; nothing is created.
    pub async fn find_by_contact(
        &self,
        project_id: ProjectId,
        contact: &Contact,
    ) -> Result<Option<EndUserView>, EndUsersError> {
        Ok(end_user::Entity::find()
            .filter(end_user::Column::ProjectId.eq(project_id))
            .filter(end_user::Column::Channel.eq(contact.channel))
            .filter(end_user::Column::ExternalId.eq(contact.external_id.trim()))
            .one(self.db.connection())
            .await?
            .as_ref()
            .map(view))
    }

    /// The end user behind `contact`, created on first contact (`EndUserCreated`). Their name
    /// and profile are refreshed and `last_seen_at` set; a blocked end user is returned as
    /// such (the caller refuses them).
    pub async fn find_or_create(
        &self,
        project_id: ProjectId,
        contact: Contact,
    ) -> Result<EndUserView, EndUsersError> {
        Self::check_contact(&contact)?;
        let external_id = contact.external_id.trim().to_owned();
        let timestamp = self.clock.now();
        let id = EndUserId::new();
        let mut uow = self.db.begin().await?;
        let row = end_user::ActiveModel {
            id: Set(id),
            project_id: Set(project_id),
            channel: Set(contact.channel),
            external_id: Set(external_id),
            display_name: Set(contact.display_name.clone()),
            raw_profile: Set(contact
                .raw_profile
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default()))),
            consent_flags: Set(Value::Object(Default::default())),
            messages_count: Set(0),
            last_seen_at: Set(Some(timestamp)),
            blocked_at: Set(None),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
        };
        let mut on_conflict = OnConflict::columns([
            end_user::Column::ProjectId,
            end_user::Column::Channel,
            end_user::Column::ExternalId,
        ]);
        on_conflict.value(end_user::Column::LastSeenAt, Expr::value(timestamp));
        if contact.display_name.is_some() {
            on_conflict.update_column(end_user::Column::DisplayName);
        }
        if contact.raw_profile.is_some() {
            on_conflict.update_column(end_user::Column::RawProfile);
        }
        let model = end_user::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_with_returning(&*uow)
            .await?;
        // The id is ours only when this statement created the row.
        if model.id == id {
            self.bus
                .publish(
                    &mut uow,
                    &DomainEvent::EndUsers(EndUsersEvent::EndUserCreated {
                        project_id,
                        end_user_id: model.id,
                        channel: model.channel,
                    }),
                )
                .await?;
        }
        uow.commit().await?;
        Ok(view(&model))
    }

    pub async fn list(
        &self,
        project_id: ProjectId,
        filter: &EndUserFilter,
        page: &PageParams,
    ) -> Result<Page<EndUserView>, EndUsersError> {
        let mut condition = Condition::all().add(end_user::Column::ProjectId.eq(project_id));
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let pattern = format!("%{}%", escape_like(q));
            condition = condition.add(
                Condition::any()
                    .add(Expr::col(end_user::Column::ExternalId).ilike(pattern.clone()))
                    .add(Expr::col(end_user::Column::DisplayName).ilike(pattern)),
            );
        }
        if let Some(channel) = &filter.channel {
            condition = condition.add(end_user::Column::Channel.eq(*channel));
        }
        match filter.blocked {
            Some(true) => condition = condition.add(end_user::Column::BlockedAt.is_not_null()),
            Some(false) => condition = condition.add(end_user::Column::BlockedAt.is_null()),
            None => {}
        }
        let select = end_user::Entity::find()
            .filter(condition)
            .order_by_desc(end_user::Column::CreatedAt)
            .order_by_desc(end_user::Column::Id);
        let (rows, total) = fetch_page(self.db.connection(), select, page).await?;
        Ok(Page::new(rows.iter().map(view).collect(), total, page))
    }

    async fn find(
        &self,
        project_id: ProjectId,
        end_user_id: EndUserId,
    ) -> Result<end_user::Model, EndUsersError> {
        end_user::Entity::find_by_id(end_user_id)
            .filter(end_user::Column::ProjectId.eq(project_id))
            .one(self.db.connection())
            .await?
            .ok_or(EndUsersError::NotFound)
    }

    pub async fn get(
        &self,
        project_id: ProjectId,
        end_user_id: EndUserId,
    ) -> Result<EndUserView, EndUsersError> {
        Ok(view(&self.find(project_id, end_user_id).await?))
    }

    /// Blocks or unblocks; a no-op (and no event) when already so.
    pub async fn set_blocked(
        &self,
        project_id: ProjectId,
        end_user_id: EndUserId,
        blocked: bool,
        actor: Actor,
    ) -> Result<EndUserView, EndUsersError> {
        let mut uow = self.db.begin().await?;
        let now = self.clock.now();
        let changed = end_user::Entity::update_many()
            .col_expr(
                end_user::Column::BlockedAt,
                Expr::value(blocked.then_some(now)),
            )
            .col_expr(end_user::Column::UpdatedAt, Expr::value(now))
            .filter(end_user::Column::Id.eq(end_user_id))
            .filter(end_user::Column::ProjectId.eq(project_id))
            .filter(if blocked {
                end_user::Column::BlockedAt.is_null()
            } else {
                end_user::Column::BlockedAt.is_not_null()
            })
            .exec_with_returning(&*uow)
            .await?;
        let Some(model) = changed.into_iter().next() else {
            drop(uow);
            return self.get(project_id, end_user_id).await;
        };
        let event = if blocked {
            EndUsersEvent::EndUserBlocked {
                project_id,
                end_user_id,
                actor,
            }
        } else {
            EndUsersEvent::EndUserUnblocked {
                project_id,
                end_user_id,
                actor,
            }
        };
        self.bus
            .publish(&mut uow, &DomainEvent::EndUsers(event))
            .await?;
        uow.commit().await?;
        Ok(view(&model))
    }

    /// Erases the end user with their conversations and messages (by cascade);
    /// `EndUserDeleted` has analytics forget what the audit log says about them.
    pub async fn delete(
        &self,
        project_id: ProjectId,
        end_user_id: EndUserId,
        actor: Actor,
    ) -> Result<(), EndUsersError> {
        let mut uow = self.db.begin().await?;
        let deleted = end_user::Entity::delete_many()
            .filter(end_user::Column::Id.eq(end_user_id))
            .filter(end_user::Column::ProjectId.eq(project_id))
            .exec(&*uow)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(EndUsersError::NotFound);
        }
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::EndUsers(EndUsersEvent::EndUserDeleted {
                    project_id,
                    end_user_id,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        Ok(())
    }

    /// Counts a message from the end user (called by the chat pipeline).
    pub async fn record_message(
        &self,
        project_id: ProjectId,
        end_user_id: EndUserId,
    ) -> Result<(), EndUsersError> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "UPDATE end_users SET messages_count = messages_count + 1, last_seen_at = $3, \
                 updated_at = $3 WHERE id = $1 AND project_id = $2",
                [
                    end_user_id.into(),
                    project_id.into(),
                    self.clock.now().into(),
                ],
            ))
            .await?;
        Ok(())
    }
}

/// `%` and `_` matched literally in an ILIKE pattern.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
