//! Users and sessions: registration, login with throttling, access tokens (JWT, HS256 pinned),
//! refresh tokens (opaque, stored hashed, rotated on every use, grouped in families whose
//! reuse revokes the family), password changes, and the admin's user management.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::{Actor, PlatformRole, TokenVerifier, VerifiedToken, throttle_address};
use crate::core::cache::RateLimiter;
use crate::core::config::AuthSettings;
use crate::core::crypto::{PasswordCheck, PasswordHashing, SecretBox, hash_token, random_token};
use crate::core::db::{Db, is_unique_violation, new_id, now};
use crate::core::error::AppError;
use crate::core::events::EventBus;
use crate::core::pagination::{Page, PageParams, fetch_page};
use crate::modules::events::DomainEvent;
use crate::modules::platform_config::PlatformConfigService;
use crate::modules::platform_config::domain::errors::PlatformConfigError;

use super::domain::entities::{refresh_token, user};
use super::domain::errors::AuthError;
use super::domain::events::AuthEvent;

const REFRESH_TOKEN_PREFIX: &str = "rt_";

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub full_name: Option<String>,
    pub role: PlatformRole,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// Just enough of a user for other modules (members lists).
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: Uuid,
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

/// A token pair as kept (sealed) for the refresh grace window.
#[derive(Deserialize)]
struct StoredPair {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

fn successor_context(token_id: Uuid) -> String {
    format!("refresh_successor:{token_id}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: PlatformRole,
    exp: u64,
    iat: u64,
    jti: Uuid,
    /// The refresh-token family (session) this token came from.
    sid: Uuid,
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
}

fn to_view(model: &user::Model) -> UserView {
    UserView {
        id: model.id,
        email: model.email.clone(),
        full_name: model.full_name.clone(),
        role: PlatformRole::parse(&model.role).unwrap_or(PlatformRole::User),
        is_active: model.is_active,
        created_at: model.created_at,
    }
}

/// Emails are compared trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

impl AuthService {
    pub fn new(
        db: Db,
        bus: EventBus<DomainEvent>,
        settings: AuthSettings,
        jwt_secret: &SecretString,
        limiter: RateLimiter,
        platform: Arc<PlatformConfigService>,
        secret_box: SecretBox,
    ) -> Result<Self, AuthError> {
        let hashing = PasswordHashing::owasp();
        let dummy_hash = hashing
            .hash("not-a-real-password")
            .map_err(|error| AuthError::Internal(error.to_string()))?;
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
        })
    }

    fn check_password_policy(&self, field: &'static str, password: &str) -> Result<(), AuthError> {
        let length = password.chars().count();
        if length < self.settings.password_min_length || length > self.settings.password_max_length
        {
            return Err(AuthError::InvalidField {
                field,
                message: format!(
                    "must be {} to {} characters",
                    self.settings.password_min_length, self.settings.password_max_length
                ),
            });
        }
        if password.trim().is_empty() {
            return Err(AuthError::InvalidField {
                field,
                message: "must not be only spaces".into(),
            });
        }
        Ok(())
    }

    async fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let hashing = self.hashing.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(|error| AuthError::Internal(error.to_string()))?
            .map_err(|error| AuthError::Internal(error.to_string()))
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
            .map_err(|error| AuthError::Internal(error.to_string()))
    }

    /// Self-service sign-up, when the platform config allows it. Every attempt counts
    /// against the client IP (`auth.registrations_per_ip` per `auth.registration_window_secs`):
    /// each costs an argon2 run and makes an account.
    pub async fn register(
        &self,
        email: &str,
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
            .map_err(|error| match error {
                PlatformConfigError::Unavailable(unavailable) => {
                    AuthError::Unavailable(unavailable)
                }
                other => AuthError::Internal(other.to_string()),
            })?
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
        email: &str,
        password: &str,
        full_name: Option<String>,
        role: PlatformRole,
        actor: Actor,
    ) -> Result<UserView, AuthError> {
        self.check_password_policy("password", password)?;
        let email = normalize_email(email);
        let password_hash = self.hash_password(password).await?;
        let timestamp = now();
        let mut uow = self.db.begin().await?;
        let created = user::ActiveModel {
            id: Set(new_id()),
            email: Set(email.clone()),
            password_hash: Set(password_hash),
            full_name: Set(full_name.filter(|name| !name.trim().is_empty())),
            role: Set(role.as_str().to_owned()),
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
            email,
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
        let email = normalize_email(email);
        let throttles = self.login_throttles(&email, ip.as_deref());
        self.refuse_if_throttled(&throttles).await?;

        let found = user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(self.db.connection())
            .await?;
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

        let actor = Actor {
            user_id: Some(user.id),
            ip: ip.clone(),
        };
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

    /// Locks the user's row: revocations take it exclusively and refreshes shared, so a
    /// refresh cannot slip a new token into a family being revoked (READ COMMITTED would let
    /// the revoking UPDATE miss a row committed while it waited).
    async fn lock_user<C: ConnectionTrait>(
        &self,
        conn: &C,
        user_id: Uuid,
        exclusive: bool,
    ) -> Result<(), AuthError> {
        let lock = if exclusive { "FOR UPDATE" } else { "FOR SHARE" };
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            format!("SELECT 1 FROM users WHERE id = $1 {lock}"),
            [user_id.into()],
        ))
        .await?;
        Ok(())
    }

    /// Revokes the user's sessions, all or all but `keep`.
    async fn revoke_user_sessions<C: ConnectionTrait>(
        &self,
        conn: &C,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> Result<(), AuthError> {
        let mut sessions = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .filter(refresh_token::Column::RevokedAt.is_null());
        if let Some(keep) = keep {
            sessions = sessions.filter(refresh_token::Column::FamilyId.ne(keep));
        }
        sessions.exec(conn).await?;
        Ok(())
    }

    /// A new access token and a new refresh token in `family_id`.
    async fn issue<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: &user::Model,
        family_id: Uuid,
        ip: Option<String>,
    ) -> Result<TokenPair, AuthError> {
        Ok(self.issue_with_id(conn, user, family_id, ip).await?.0)
    }

    /// [`AuthService::issue`], with the new refresh token's row id.
    async fn issue_with_id<C: ConnectionTrait>(
        &self,
        conn: &C,
        user: &user::Model,
        family_id: Uuid,
        ip: Option<String>,
    ) -> Result<(TokenPair, Uuid), AuthError> {
        let issued_at = unix_now();
        let claims = Claims {
            sub: user.id,
            role: PlatformRole::parse(&user.role).unwrap_or(PlatformRole::User),
            iat: issued_at,
            exp: issued_at + self.settings.access_token_ttl_secs,
            jti: new_id(),
            sid: family_id,
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding_key)
                .map_err(|error| AuthError::Internal(error.to_string()))?;
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
        let created_at = now();
        let id = new_id();
        refresh_token::ActiveModel {
            id: Set(id),
            user_id: Set(user.id),
            family_id: Set(family_id),
            token_hash: Set(hash_token(&refresh_token)),
            created_at: Set(created_at),
            expires_at: Set(created_at
                + chrono::Duration::days(i64::from(self.settings.refresh_token_ttl_days))),
            used_at: Set(None),
            revoked_at: Set(None),
            ip: Set(ip),
            successor_id: Set(None),
            successor_sealed: Set(None),
        }
        .insert(conn)
        .await?;
        let pair = TokenPair {
            access_token,
            refresh_token,
            token_type: "bearer",
            expires_in: self.settings.access_token_ttl_secs,
        };
        Ok((pair, id))
    }

    /// Spends `presented` and issues a new pair in its family. A token presented after it was
    /// spent means it leaked: the whole family is revoked.
    pub async fn refresh(
        &self,
        presented: &str,
        ip: Option<String>,
    ) -> Result<TokenPair, AuthError> {
        let token_hash = hash_token(presented);
        let owner = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash.as_str()))
            .one(self.db.connection())
            .await?
            .ok_or(AuthError::InvalidToken)?
            .user_id;
        let uow = self.db.begin().await?;
        self.lock_user(&*uow, owner, false).await?;
        // Spend it atomically: of two concurrent uses, one wins and one is a reuse.
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now()))
            .filter(refresh_token::Column::TokenHash.eq(token_hash.as_str()))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(now()))
            .exec_with_returning(&*uow)
            .await?;
        let Some(token) = spent.into_iter().next() else {
            drop(uow);
            if let Some(pair) = self.pair_within_grace(&token_hash).await? {
                return Ok(pair);
            }
            return Err(self.refused_refresh(&token_hash, ip).await?);
        };
        let user = user::Entity::find_by_id(token.user_id)
            .one(&*uow)
            .await?
            .filter(|user| user.is_active)
            .ok_or(AuthError::InvalidToken)?;
        let (pair, successor_id) = self
            .issue_with_id(&*uow, &user, token.family_id, ip)
            .await?;
        // Remembered, sealed, for a second use of `presented` within the grace window.
        let sealed = self
            .secret_box
            .seal(
                &serde_json::to_string(&pair)
                    .map_err(|error| AuthError::Internal(error.to_string()))?,
                &successor_context(token.id),
            )
            .map_err(|error| AuthError::Internal(error.to_string()))?;
        refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::SuccessorId,
                Expr::value(successor_id),
            )
            .col_expr(refresh_token::Column::SuccessorSealed, Expr::value(sealed))
            .filter(refresh_token::Column::Id.eq(token.id))
            .exec(&*uow)
            .await?;
        // The pair kept for `presented`'s own predecessor is spent now: forget it.
        refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::SuccessorSealed,
                Expr::value(Option::<String>::None),
            )
            .filter(refresh_token::Column::SuccessorId.eq(token.id))
            .exec(&*uow)
            .await?;
        uow.commit().await?;
        Ok(pair)
    }

    /// The pair a spent token was exchanged for, if it was spent less than
    /// `auth.refresh_reuse_grace_secs` ago and that pair's refresh token is still unused and
    /// live: the same client asking twice (two tabs, a retry), not a thief.
    async fn pair_within_grace(&self, token_hash: &str) -> Result<Option<TokenPair>, AuthError> {
        let Some(token) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .one(self.db.connection())
            .await?
        else {
            return Ok(None);
        };
        let grace = chrono::Duration::seconds(
            i64::try_from(self.settings.refresh_reuse_grace_secs).unwrap_or(0),
        );
        let (Some(used_at), Some(successor_id), Some(sealed), None) = (
            token.used_at,
            token.successor_id,
            token.successor_sealed.as_deref(),
            token.revoked_at,
        ) else {
            return Ok(None);
        };
        if now() - used_at > grace {
            return Ok(None);
        }
        let successor_live = refresh_token::Entity::find_by_id(successor_id)
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .one(self.db.connection())
            .await?
            .is_some();
        if !successor_live {
            return Ok(None);
        }
        let opened = self
            .secret_box
            .open(sealed, &successor_context(token.id))
            .map_err(|error| AuthError::Internal(error.to_string()))?;
        let pair = serde_json::from_str::<StoredPair>(opened.expose_secret())
            .map_err(|error| AuthError::Internal(error.to_string()))?;
        Ok(Some(TokenPair {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "bearer",
            expires_in: pair.expires_in,
        }))
    }

    /// Why a refresh was refused; on reuse of a spent token, revokes its family first.
    async fn refused_refresh(
        &self,
        token_hash: &str,
        ip: Option<String>,
    ) -> Result<AuthError, AuthError> {
        let Some(token) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .one(self.db.connection())
            .await?
        else {
            return Ok(AuthError::InvalidToken);
        };
        if token.used_at.is_none() || token.revoked_at.is_some() {
            return Ok(AuthError::InvalidToken);
        }
        let mut uow = self.db.begin().await?;
        self.lock_user(&*uow, token.user_id, true).await?;
        self.revoke_family(&*uow, token.family_id).await?;
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Auth(AuthEvent::RefreshTokenReuseDetected {
                    user_id: token.user_id,
                    family_id: token.family_id,
                    actor: Actor {
                        user_id: Some(token.user_id),
                        ip,
                    },
                }),
            )
            .await?;
        uow.commit().await?;
        tracing::warn!(user_id = %token.user_id, family_id = %token.family_id, "refresh token reuse: family revoked");
        Ok(AuthError::RefreshTokenReused)
    }

    async fn revoke_family<C: ConnectionTrait>(
        &self,
        conn: &C,
        family_id: Uuid,
    ) -> Result<(), AuthError> {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now()))
            .col_expr(
                refresh_token::Column::SuccessorSealed,
                Expr::value(Option::<String>::None),
            )
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(conn)
            .await?;
        Ok(())
    }

    /// Ends the session `presented` belongs to (if it is the caller's).
    pub async fn logout(&self, user_id: Uuid, presented: &str) -> Result<(), AuthError> {
        let token = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash_token(presented)))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .one(self.db.connection())
            .await?;
        if let Some(token) = token {
            self.revoke_family(self.db.connection(), token.family_id)
                .await?;
        }
        Ok(())
    }

    pub async fn me(&self, user_id: Uuid) -> Result<UserView, AuthError> {
        user::Entity::find_by_id(user_id)
            .one(self.db.connection())
            .await?
            .map(|user| to_view(&user))
            .ok_or(AuthError::UserNotFound)
    }

    /// Sets a new password and revokes every other session of the user.
    pub async fn change_password(
        &self,
        user_id: Uuid,
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
        active.updated_at = Set(now());
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
        Ok(())
    }

    /// Users by email substring, newest first.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        page: &PageParams,
    ) -> Result<Page<UserView>, AuthError> {
        let mut select = user::Entity::find();
        if let Some(query) = query.map(str::trim).filter(|query| !query.is_empty()) {
            let pattern = format!("%{}%", escape_like(&query.to_lowercase()));
            select = select.filter(user::Column::Email.like(pattern));
        }
        let (rows, total) = fetch_page(
            self.db.connection(),
            select.order_by_desc(user::Column::CreatedAt),
            page,
        )
        .await?;
        let users = rows;
        Ok(Page::new(users.iter().map(to_view).collect(), total, page))
    }

    /// Changes a user's role or active flag. An admin cannot demote or deactivate themself
    /// (so the platform always keeps one). Deactivating revokes every session at once.
    pub async fn update_user(
        &self,
        user_id: Uuid,
        patch: UserPatch,
        actor: Actor,
    ) -> Result<UserView, AuthError> {
        if actor.user_id == Some(user_id)
            && (patch.role == Some(PlatformRole::User) || patch.is_active == Some(false))
        {
            return Err(AuthError::SelfLockout(
                "you cannot demote or deactivate yourself; ask another saas_admin",
            ));
        }
        let mut uow = self.db.begin().await?;
        let user = user::Entity::find_by_id(user_id)
            .lock_exclusive()
            .one(&*uow)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        let mut active = user.into_active_model();
        if let Some(role) = patch.role {
            active.role = Set(role.as_str().to_owned());
        }
        if let Some(is_active) = patch.is_active {
            active.is_active = Set(is_active);
        }
        active.updated_at = Set(now());
        let updated = active.update(&*uow).await?;
        if patch.is_active == Some(false) {
            self.revoke_user_sessions(&*uow, user_id, None).await?;
        }
        self.bus
            .publish(
                &mut uow,
                &DomainEvent::Auth(AuthEvent::UserUpdated {
                    user_id,
                    role: patch.role.map(|role| role.as_str().to_owned()),
                    is_active: patch.is_active,
                    actor,
                }),
            )
            .await?;
        uow.commit().await?;
        Ok(to_view(&updated))
    }

    /// Active users by email (members are added by email).
    pub async fn find_active_user_by_email(
        &self,
        email: &str,
    ) -> Result<Option<UserSummary>, AuthError> {
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(normalize_email(email)))
            .filter(user::Column::IsActive.eq(true))
            .one(self.db.connection())
            .await?
            .map(|user| UserSummary {
                id: user.id,
                email: user.email,
            }))
    }

    pub async fn users_by_ids(&self, ids: &[Uuid]) -> Result<Vec<UserSummary>, AuthError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids.iter().copied()))
            .all(self.db.connection())
            .await?
            .into_iter()
            .map(|user| UserSummary {
                id: user.id,
                email: user.email,
            })
            .collect())
    }

    /// True when at least one active saas_admin exists.
    pub async fn has_saas_admin(&self) -> Result<bool, AuthError> {
        Ok(user::Entity::find()
            .filter(user::Column::Role.eq(PlatformRole::SaasAdmin.as_str()))
            .filter(user::Column::IsActive.eq(true))
            .count(self.db.connection())
            .await?
            > 0)
    }
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[async_trait]
impl TokenVerifier for AuthService {
    /// A token is good when it verifies with HS256 and our key (no other algorithm, `none`
    /// included), has not expired, and its user still exists and is active. The role comes
    /// from the database, so a demotion applies at once.
    async fn verify_access_token(&self, token: &str) -> Result<VerifiedToken, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = self.settings.jwt_leeway_secs;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        let user = user::Entity::find_by_id(claims.sub)
            .one(self.db.connection())
            .await?
            .filter(|user| user.is_active)
            .ok_or(AuthError::InvalidToken)?;
        // The session must still be live: logout, reuse detection and password changes end
        // access tokens too, not only refresh tokens.
        let session_live = refresh_token::Entity::find()
            .filter(refresh_token::Column::FamilyId.eq(claims.sid))
            .filter(refresh_token::Column::UserId.eq(user.id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .count(self.db.connection())
            .await?
            > 0;
        if !session_live {
            return Err(AuthError::InvalidToken.into());
        }
        Ok(VerifiedToken {
            user_id: user.id,
            role: PlatformRole::parse(&user.role).unwrap_or(PlatformRole::User),
            session_id: Some(claims.sid),
        })
    }
}
