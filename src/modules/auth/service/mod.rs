//! Users and sessions: registration, login with throttling, access tokens (JWT, HS256 pinned),
//! refresh tokens (opaque, stored hashed, rotated on every use, grouped in families whose
//! reuse revokes the family), password changes, and the admin's user management.
//!
//! Sessions — tokens, refresh with rotation and its grace window, logout, verification — are in
//! `sessions.rs`; the saas_admin's user management and the lookups other modules make, in
//! `users.rs`.

mod sessions;
mod users;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::{Actor, PlatformRole, throttle_address};
use crate::core::cache::{ExactCache, ExactCaches, RateLimiter};
use crate::core::clock::Clock;
use crate::core::config::AuthSettings;
use crate::core::crypto::{PasswordCheck, PasswordHashing, SecretBox};
use crate::core::db::{Db, is_unique_violation, new_id};
use crate::core::email::Email;
use crate::core::error::{AppError, Failure};
use crate::core::events::EventBus;
use crate::core::ids::UserId;
use crate::modules::events::DomainEvent;
use crate::modules::platform_config::PlatformConfigService;

use super::domain::entities::user;
use super::domain::errors::AuthError;
use super::domain::events::AuthEvent;

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    pub email: String,
    pub full_name: Option<String>,
    pub role: PlatformRole,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// Just enough of a user for other modules (members lists).
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: UserId,
    pub email: String,
}

/// Issued at login and refresh. `Debug` hides both tokens.
#[derive(Clone, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A change a saas_admin makes to a user.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub role: Option<PlatformRole>,
    pub is_active: Option<bool>,
}

pub struct AuthService {
    db: Db,
    bus: EventBus<DomainEvent>,
    settings: AuthSettings,
    hashing: PasswordHashing,
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    limiter: RateLimiter,
    platform: Arc<PlatformConfigService>,
    /// Seals the pair a refresh token was exchanged for (the grace window).
    secret_box: SecretBox,
    /// Verified against when the email is unknown, so both paths cost one argon2 run.
    dummy_hash: String,
    clock: Arc<dyn Clock>,
    caches: ExactCaches,
    /// Live sessions by id (the refresh-token family), with their user and role; dropped by
    /// any change to the user or their tokens (the `user:<id>` tag, from the triggers of
    /// migration `m20261204_110000_auth_sessions_cache_invalidation`).
    sessions: ExactCache<Uuid, SessionPrincipal>,
}

/// What a live session proves.
#[derive(Debug, Clone, Copy)]
struct SessionPrincipal {
    user_id: UserId,
    role: PlatformRole,
}

/// Most sessions a process keeps.
const SESSIONS_CACHED: usize = 50_000;

/// What the auth service works with, besides its settings and key.
pub struct AuthDeps {
    pub db: Db,
    pub bus: EventBus<DomainEvent>,
    pub clock: Arc<dyn Clock>,
    pub limiter: RateLimiter,
    pub platform: Arc<PlatformConfigService>,
    /// Seals the pair a refresh token was exchanged for.
    pub secret_box: SecretBox,
    /// Keeps the sessions the request path verifies.
    pub caches: ExactCaches,
}

pub(super) fn to_view(model: &user::Model) -> UserView {
    UserView {
        id: model.id,
        email: model.email.clone(),
        full_name: model.full_name.clone(),
        role: model.role,
        is_active: model.is_active,
        created_at: model.created_at,
    }
}

impl AuthService {
    pub fn new(
        deps: AuthDeps,
        settings: AuthSettings,
        jwt_secret: &SecretString,
    ) -> Result<Self, AuthError> {
        let AuthDeps {
            db,
            bus,
            clock,
            limiter,
            platform,
            secret_box,
            caches,
        } = deps;
        let hashing = PasswordHashing::owasp();
        let dummy_hash = hashing
            .hash("not-a-real-password")
            .map_err(AuthError::internal)?;
        Ok(AuthService {
            db,
            bus,
            settings,
            hashing,
            encoding_key: EncodingKey::from_secret(jwt_secret.expose_secret().as_bytes()),
            decoding_key: DecodingKey::from_secret(jwt_secret.expose_secret().as_bytes()),
            limiter,
            platform,
            secret_box,
            dummy_hash,
            clock,
            sessions: caches.cache(SESSIONS_CACHED),
            caches,
        })
    }

    fn check_password_policy(&self, field: &'static str, password: &str) -> Result<(), AuthError> {
        let length = password.chars().count();
        if length < self.settings.password_min_length || length > self.settings.password_max_length
        {
            return Err(AuthError::invalid(
                field,
                format!(
                    "must be {} to {} characters",
                    self.settings.password_min_length, self.settings.password_max_length
                ),
            ));
        }
        if password.trim().is_empty() {
            return Err(AuthError::invalid(field, "must not be only spaces"));
        }
        Ok(())
    }

    async fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let hashing = self.hashing.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(AuthError::internal)?
            .map_err(AuthError::internal)
    }

    async fn verify_password(
        &self,
        password: &str,
        hash: &str,
    ) -> Result<PasswordCheck, AuthError> {
        let hashing = self.hashing.clone();
        let (password, hash) = (password.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || hashing.verify(&password, &hash))
            .await
            .map_err(AuthError::internal)
    }

    /// Self-service sign-up, when the platform config allows it. Every attempt counts
    /// against the client IP (`auth.registrations_per_ip` per `auth.registration_window_secs`):
    /// each costs an argon2 run and makes an account.
    pub async fn register(
        &self,
        email: &Email,
        password: &str,
        full_name: Option<String>,
        actor: Actor,
    ) -> Result<UserView, AppError> {
        if let Some(ip) = actor.ip.as_deref() {
            let decision = self
                .limiter
                .check(
                    &format!("register:ip:{}", throttle_address(ip)),
                    self.settings.registrations_per_ip,
                    Duration::from_secs(self.settings.registration_window_secs),
                )
                .await
                .map_err(AppError::internal)?;
            if !decision.allowed {
                return Err(AppError::rate_limited(decision.retry_after_seconds()));
            }
        }
        if !self
            .platform
            .registration_open()
            .await
            .map_err(Failure::from)?
        {
            return Err(AuthError::RegistrationClosed.into());
        }
        Ok(self
            .create_user(email, password, full_name, PlatformRole::User, actor)
            .await?)
    }

    /// Creates a user with `role` (registration, the CLI, the bootstrap admin).
    pub async fn create_user(
        &self,
        email: &Email,
        password: &str,
        full_name: Option<String>,
        role: PlatformRole,
        actor: Actor,
    ) -> Result<UserView, AuthError> {
        self.check_password_policy("password", password)?;
        let password_hash = self.hash_password(password).await?;
        let timestamp = self.clock.now();
        let mut uow = self.db.begin().await?;
        let created = user::ActiveModel {
            id: Set(UserId::new()),
            email: Set(email.as_str().to_owned()),
            password_hash: Set(password_hash),
            full_name: Set(full_name.filter(|name| !name.trim().is_empty())),
            role: Set(role),
            is_active: Set(true),
            created_at: Set(timestamp),
            updated_at: Set(timestamp),
        }
        .insert(&*uow)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                AuthError::EmailTaken
            } else {
                AuthError::from(error)
            }
        })?;
        let event = DomainEvent::Auth(AuthEvent::UserRegistered {
            user_id: created.id,
            email: email.as_str().to_owned(),
            role: role.as_str().to_owned(),
            actor,
        });
        self.bus.publish(&mut uow, &event).await?;
        uow.commit().await?;
        Ok(to_view(&created))
    }

    /// Checks the throttles, then the credentials; answers the same for an unknown email and
    /// a wrong password, after the same amount of work.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ip: Option<String>,
    ) -> Result<TokenPair, AppError> {
        // Not an address: no account has it (one throttle bucket for all such names).
        let email = Email::parse(email).ok();
        let throttle_name = email.as_ref().map_or("(not an email)", Email::as_str);
        let throttles = self.login_throttles(throttle_name, ip.as_deref());
        self.refuse_if_throttled(&throttles).await?;

        let found = match &email {
            Some(email) => {
                user::Entity::find()
                    .filter(user::Column::Email.eq(email.as_str()))
                    .one(self.db.connection())
                    .await?
            }
            None => None,
        };
        let (user, check) = match found {
            Some(user) => {
                let check = self.verify_password(password, &user.password_hash).await?;
                (Some(user), check)
            }
            None => {
                self.verify_password(password, &self.dummy_hash).await?;
                (None, PasswordCheck::Mismatch)
            }
        };
        let user = match (user, check) {
            (Some(user), PasswordCheck::Match | PasswordCheck::MatchNeedsRehash)
                if user.is_active =>
            {
                if check == PasswordCheck::MatchNeedsRehash {
                    let fresh = self.hash_password(password).await?;
                    let mut active = user.clone().into_active_model();
                    active.password_hash = Set(fresh);
                    active.update(self.db.connection()).await?;
                }
                user
            }
            _ => {
                self.record_failures(&throttles).await?;
                return Err(AuthError::InvalidCredentials.into());
            }
        };

        let actor = Actor::user(user.id, ip.clone());
        let mut uow = self.db.begin().await?;
        let pair = self.issue(&*uow, &user, new_id(), ip).await?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Auth(AuthEvent::UserLoggedIn {
                    user_id: user.id,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        Ok(pair)
    }

    /// The failure counters a login attempt for `email` from `ip` is judged by: the pair
    /// (tight: guessing one account's password from one place), the IP (trying many accounts
    /// from one place) and the email alone (a much higher ceiling against guessing from many
    /// places). Failures elsewhere never lock the owner out from their own address.
    fn login_throttles(&self, email: &str, ip: Option<&str>) -> Vec<(String, u32)> {
        let mut throttles = vec![(
            format!("login:email:{email}"),
            self.settings.login_attempts_per_email,
        )];
        if let Some(ip) = ip.map(throttle_address) {
            throttles.push((
                format!("login:email-ip:{email}:{ip}"),
                self.settings.login_attempts_per_email_and_ip,
            ));
            throttles.push((
                format!("login:ip:{ip}"),
                self.settings.login_attempts_per_ip,
            ));
        }
        throttles
    }

    /// 429 when any counter already reached its limit in the current window.
    async fn refuse_if_throttled(&self, throttles: &[(String, u32)]) -> Result<(), AppError> {
        let window = Duration::from_secs(self.settings.login_window_secs);
        for (key, limit) in throttles {
            let decision = self
                .limiter
                .peek(key, *limit, window)
                .await
                .map_err(AppError::internal)?;
            if !decision.allowed {
                return Err(AppError::rate_limited(decision.retry_after_seconds()));
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against each counter.
    async fn record_failures(&self, throttles: &[(String, u32)]) -> Result<(), AppError> {
        let window = Duration::from_secs(self.settings.login_window_secs);
        for (key, _) in throttles {
            self.limiter
                .record(key, window)
                .await
                .map_err(AppError::internal)?;
        }
        Ok(())
    }

    pub async fn me(&self, user_id: UserId) -> Result<UserView, AuthError> {
        user::Entity::find_by_id(user_id)
            .one(self.db.connection())
            .await?
            .map(|user| to_view(&user))
            .ok_or(AuthError::UserNotFound)
    }

    /// Sets a new password and revokes every other session of the user.
    pub async fn change_password(
        &self,
        user_id: UserId,
        session_id: Option<Uuid>,
        current: &str,
        new: &str,
        actor: Actor,
    ) -> Result<(), AppError> {
        self.check_password_policy("new_password", new)?;
        let user = user::Entity::find_by_id(user_id)
            .one(self.db.connection())
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let throttle = [(
            format!("password:user:{user_id}"),
            self.settings.login_attempts_per_email_and_ip,
        )];
        self.refuse_if_throttled(&throttle).await?;
        if self.verify_password(current, &user.password_hash).await? == PasswordCheck::Mismatch {
            self.record_failures(&throttle).await?;
            return Err(AuthError::WrongCurrentPassword.into());
        }
        let password_hash = self.hash_password(new).await?;
        let mut uow = self.db.begin().await?;
        self.lock_user(&*uow, user_id, true).await?;
        let mut active = user.into_active_model();
        active.password_hash = Set(password_hash);
        active.updated_at = Set(self.clock.now());
        active.update(&*uow).await?;
        self.revoke_user_sessions(&*uow, user_id, session_id)
            .await?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Auth(AuthEvent::PasswordChanged { user_id, actor }),
            )
            .await?;
        uow.commit().await?;
        self.caches.settle().await;
        Ok(())
    }
}
