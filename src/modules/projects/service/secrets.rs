//! A project's secrets, sealed at rest; the credentials among them are bound to the endpoint
//! they were entered for (`core::outbound::SecretBinding`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::auth::Actor;
use crate::core::ids::ProjectId;
use crate::core::outbound::{BaseUrl, SecretBinding, endpoint_identity};
use crate::core::pagination::{Page, PageParams, fetch_page};

use super::ProjectsService;
use crate::modules::projects::domain::entities::secret;
use crate::modules::projects::domain::errors::ProjectsError;
use crate::modules::projects::domain::events::ProjectsEvent;

/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A credential secret as its endpoint sees it (see [`SecretBinding`]).
#[derive(Debug, Clone)]
pub enum BoundCredential {
    Unset,
    /// Entered for the endpoint in force now: may be sent there.
    Usable(SecretString),
    /// Entered while another endpoint was set: never sent until entered again.
    EnteredForAnotherEndpoint,
}

/// A project's endpoint secret and the credential bound to it.
#[derive(Debug, Clone)]
pub struct EndpointSecrets {
    /// The value of the endpoint secret (e.g. `LLM_BASE_URL`), when the project set one.
    pub endpoint: Option<String>,
    pub credential: BoundCredential,
}

fn secret_context(project_id: ProjectId, name: &str) -> String {
    format!("project_secret:{project_id}:{name}")
}

/// A secret's name, read like an environment variable (`OPENAI_API_KEY`): letters, digits
/// and `_`, not starting with a digit, at most 64 characters. Only [`SecretName::parse`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName(String);

/// The longest secret name.
const MAX_SECRET_NAME_CHARS: usize = 64;

impl SecretName {
    pub fn parse(name: &str) -> Result<SecretName, ProjectsError> {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= MAX_SECRET_NAME_CHARS;
        if valid {
            Ok(SecretName(name.to_owned()))
        } else {
            Err(ProjectsError::invalid(
                "name",
                "letters, digits and `_`, not starting with a digit, at most 64",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ProjectsService {
    fn binding_of_credential(&self, name: &str) -> Option<SecretBinding> {
        self.bindings
            .iter()
            .copied()
            .find(|binding| binding.credential == name)
    }

    fn is_endpoint_secret(&self, name: &str) -> bool {
        self.bindings.iter().any(|binding| binding.endpoint == name)
    }

    /// The opened value of a secret row, or `None` when there is no row.
    async fn open_secret<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        project_id: ProjectId,
        name: &str,
    ) -> Result<Option<SecretString>, ProjectsError> {
        let Some(row) = secret::Entity::find_by_id((project_id, name.to_owned()))
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.secret_box.open(
            &row.sealed_value,
            &secret_context(project_id, name),
        )?))
    }

    pub async fn list_secrets(
        &self,
        project_id: ProjectId,
        page: &PageParams,
    ) -> Result<Page<SecretView>, ProjectsError> {
        let select = secret::Entity::find().filter(secret::Column::ProjectId.eq(project_id));
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_asc(secret::Column::Name),
            page,
        )
        .await?;
        let items = rows
            .into_iter()
            .map(|row| SecretView {
                name: row.name,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    /// Creates or replaces a secret, sealed with the current key.
    pub async fn put_secret(
        &self,
        project_id: ProjectId,
        name: &SecretName,
        value: &SecretString,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let name = name.as_str();
        if value.expose_secret().is_empty() || value.expose_secret().len() > MAX_SECRET_BYTES {
            return Err(ProjectsError::invalid(
                "value",
                format!("must be 1 to {MAX_SECRET_BYTES} bytes"),
            ));
        }
        if self.is_endpoint_secret(name) {
            BaseUrl::parse(value.expose_secret())
                .map_err(|error| ProjectsError::invalid("value", format!("{name} {error}")))?;
        }
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        let context = secret_context(project_id, name);
        let sealed = match self.binding_of_credential(name) {
            // Bound to the endpoint in force as it is entered. Its row, when there is one, is
            // locked so that a concurrent change of the endpoint waits for this; without one
            // the key is bound to the platform's endpoint, which a concurrently set project
            // endpoint never receives (it fails closed).
            Some(binding) => {
                let endpoint =
                    secret::Entity::find_by_id((project_id, binding.endpoint.to_owned()))
                        .lock_exclusive()
                        .one(&*uow)
                        .await?
                        .map(|row| {
                            self.secret_box.open(
                                &row.sealed_value,
                                &secret_context(project_id, binding.endpoint),
                            )
                        })
                        .transpose()?;
                let endpoint = endpoint.as_ref().map(|url| url.expose_secret());
                self.secret_box.seal_for_endpoint(
                    value.expose_secret(),
                    &context,
                    &endpoint_identity(endpoint),
                )?
            }
            None => self.secret_box.seal(value.expose_secret(), &context)?,
        };
        let existing = secret::Entity::find_by_id((project_id, name.to_owned()))
            .one(&*uow)
            .await?;
        match existing {
            Some(row) => {
                let mut active = row.into_active_model();
                active.sealed_value = Set(sealed);
                active.key_id = Set(self.secret_box.current_key_id().to_owned());
                active.updated_at = Set(timestamp);
                active.update(&*uow).await?;
            }
            None => {
                secret::ActiveModel {
                    project_id: Set(project_id),
                    name: Set(name.to_owned()),
                    sealed_value: Set(sealed),
                    key_id: Set(self.secret_box.current_key_id().to_owned()),
                    created_at: Set(timestamp),
                    updated_at: Set(timestamp),
                }
                .insert(&*uow)
                .await?;
            }
        }
        self.publish(
            &mut uow,
            ProjectsEvent::SecretChanged {
                project_id,
                name: name.to_owned(),
                deleted: false,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    pub async fn delete_secret(
        &self,
        project_id: ProjectId,
        name: &str,
        actor: Actor,
    ) -> Result<(), ProjectsError> {
        let mut uow = self.db.begin().await?;
        let deleted = secret::Entity::delete_by_id((project_id, name.to_owned()))
            .exec(&*uow)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(ProjectsError::NotFound("secret"));
        }
        self.publish(
            &mut uow,
            ProjectsEvent::SecretChanged {
                project_id,
                name: name.to_owned(),
                deleted: true,
                actor,
            },
        )
        .await?;
        uow.commit().await?;
        Ok(())
    }

    /// A secret's value, for other modules (a bot token...). Credentials bound to an endpoint
    /// are read with [`ProjectsService::endpoint_secrets`] only.
    pub async fn secret_value(
        &self,
        project_id: ProjectId,
        name: &str,
    ) -> Result<Option<SecretString>, ProjectsError> {
        if self.binding_of_credential(name).is_some() {
            return Err(ProjectsError::internal(format!(
                "{name} is bound to an endpoint: read it with endpoint_secrets"
            )));
        }
        self.open_secret(self.db.connection(), project_id, name)
            .await
    }

    /// An endpoint secret and its credential, which is usable only if it was entered for that
    /// endpoint (see [`SecretBinding`]).
    pub async fn endpoint_secrets(
        &self,
        project_id: ProjectId,
        binding: SecretBinding,
    ) -> Result<EndpointSecrets, ProjectsError> {
        let rows = secret::Entity::find()
            .filter(secret::Column::ProjectId.eq(project_id))
            .filter(secret::Column::Name.is_in([binding.endpoint, binding.credential]))
            .all(self.db.connection())
            .await?;
        let sealed = |name: &str| rows.iter().find(|row| row.name == name);
        let endpoint = sealed(binding.endpoint)
            .map(|row| {
                self.secret_box.open(
                    &row.sealed_value,
                    &secret_context(project_id, binding.endpoint),
                )
            })
            .transpose()?
            .map(|url| url.expose_secret().trim().to_owned())
            .filter(|url| !url.is_empty());
        let credential = match sealed(binding.credential) {
            None => BoundCredential::Unset,
            Some(row) => match self.secret_box.open_for_endpoint(
                &row.sealed_value,
                &secret_context(project_id, binding.credential),
                &endpoint_identity(endpoint.as_deref()),
            )? {
                Some(value) => BoundCredential::Usable(value),
                None => BoundCredential::EnteredForAnotherEndpoint,
            },
        };
        Ok(EndpointSecrets {
            endpoint,
            credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SecretName;

    #[test]
    fn secret_names_read_like_environment_variables() {
        for name in ["OPENAI_API_KEY", "_private", "a1", &"K".repeat(64)] {
            assert_eq!(SecretName::parse(name).unwrap().as_str(), name);
        }
        for name in ["", "1ST", "with-dash", "spa ce", "ünï", &"K".repeat(65)] {
            assert!(SecretName::parse(name).is_err(), "{name:?}");
        }
    }
}
