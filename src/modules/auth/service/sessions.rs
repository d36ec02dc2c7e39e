//! Sessions: access tokens (JWT, HS256 pinned) and their verification, refresh tokens (opaque,
//! rotated on every use, grouped in families whose reuse revokes the family, with a short grace
//! window for a client asking twice), logout and revocation.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, Header, Validation};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::auth::{Actor, PlatformRole, TokenVerifier, VerifiedToken};
use crate::core::crypto::{hash_token, random_token};
use crate::core::db::new_id;
use crate::core::error::AppError;
use crate::core::ids::UserId;
use crate::modules::events::DomainEvent;

use super::{AuthService, SessionPrincipal, TokenPair};
use crate::modules::auth::domain::entities::{refresh_token, user};
use crate::modules::auth::domain::errors::AuthError;
use crate::modules::auth::domain::events::AuthEvent;

const REFRESH_TOKEN_PREFIX: &str = "rt_";

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
    sub: UserId,
    role: PlatformRole,
    exp: u64,
    iat: u64,
    jti: Uuid,
    /// The refresh-token family (session) this token came from.
    sid: Uuid,
}

impl AuthService {
    /// The clock's now in JWT terms (seconds since the epoch).
    fn unix_now(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap_or(0)
    }

    /// Locks the user's row: revocations take it exclusively and refreshes shared, so a
    /// refresh cannot slip a new token into a family being revoked (READ COMMITTED would let
    /// the revoking UPDATE miss a row committed while it waited).
    pub(super) async fn lock_user<C: ConnectionTrait>(
        &self,
        conn: &C,
        user_id: UserId,
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
    pub(super) async fn revoke_user_sessions<C: ConnectionTrait>(
        &self,
        conn: &C,
        user_id: UserId,
        keep: Option<Uuid>,
    ) -> Result<(), AuthError> {
        let mut sessions = refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::RevokedAt,
                Expr::value(self.clock.now()),
            )
            .filter(refresh_token::Column::UserId.eq(user_id))
            .filter(refresh_token::Column::RevokedAt.is_null());
        if let Some(keep) = keep {
            sessions = sessions.filter(refresh_token::Column::FamilyId.ne(keep));
        }
        sessions.exec(conn).await?;
        Ok(())
    }

    /// A new access token and a new refresh token in `family_id`.
    pub(super) async fn issue<C: ConnectionTrait>(
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
        let issued_at = self.unix_now();
        let claims = Claims {
            sub: user.id,
            role: user.role,
            iat: issued_at,
            exp: issued_at + self.settings.access_token_ttl_secs,
            jti: new_id(),
            sid: family_id,
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding_key)
                .map_err(AuthError::internal)?;
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
        let created_at = self.clock.now();
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
            .col_expr(refresh_token::Column::UsedAt, Expr::value(self.clock.now()))
            .filter(refresh_token::Column::TokenHash.eq(token_hash.as_str()))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(self.clock.now()))
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
                &serde_json::to_string(&pair).map_err(AuthError::internal)?,
                &successor_context(token.id),
            )
            .map_err(AuthError::internal)?;
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
        if self.clock.now() - used_at > grace {
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
            .map_err(AuthError::internal)?;
        let pair = serde_json::from_str::<StoredPair>(opened.expose_secret())
            .map_err(AuthError::internal)?;
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
                    actor: Actor::user(token.user_id, ip),
                }),
            )
            .await?;
        uow.commit().await?;
        // The stolen family's access tokens are refused everywhere once this answers.
        self.caches.settle().await;
        tracing::warn!(user_id = %token.user_id, family_id = %token.family_id, "refresh token reuse: family revoked");
        Ok(AuthError::RefreshTokenReused)
    }

    async fn revoke_family<C: ConnectionTrait>(
        &self,
        conn: &C,
        family_id: Uuid,
    ) -> Result<(), AuthError> {
        refresh_token::Entity::update_many()
            .col_expr(
                refresh_token::Column::RevokedAt,
                Expr::value(self.clock.now()),
            )
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
    pub async fn logout(&self, user_id: UserId, presented: &str) -> Result<(), AuthError> {
        let token = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash_token(presented)))
            .filter(refresh_token::Column::UserId.eq(user_id))
            .one(self.db.connection())
            .await?;
        if let Some(token) = token {
            self.revoke_family(self.db.connection(), token.family_id)
                .await?;
            self.caches.settle().await;
        }
        Ok(())
    }
}

#[async_trait]
impl TokenVerifier for AuthService {
    /// A token is good when it verifies with HS256 and our key (no other algorithm, `none`
    /// included), has not expired, and its user still exists and is active. The role comes
    /// from the database, so a demotion applies at once.
    async fn verify_access_token(&self, token: &str) -> Result<VerifiedToken, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        // Expiry is judged by the app's clock, not jsonwebtoken's reading of the system's.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &validation)
            .map_err(|_| AuthError::InvalidToken)?
            .claims;
        if claims.exp.saturating_add(self.settings.jwt_leeway_secs) < self.unix_now() {
            return Err(AuthError::InvalidToken.into());
        }
        if let Some(session) = self.sessions.get(&claims.sid)
            && session.user_id == claims.sub
        {
            return Ok(VerifiedToken {
                user_id: session.user_id,
                role: session.role,
                session_id: Some(claims.sid),
            });
        }
        let ticket = self.sessions.ticket();
        // The user must still exist and be active, and the session still live: logout, reuse
        // detection and password changes end access tokens too, not only refresh tokens.
        let live_session = Query::select()
            .expr(Expr::val(1))
            .from(refresh_token::Entity)
            .and_where(refresh_token::Column::FamilyId.eq(claims.sid))
            .and_where(refresh_token::Column::UserId.eq(claims.sub))
            .and_where(refresh_token::Column::RevokedAt.is_null())
            .to_owned();
        let user = user::Entity::find_by_id(claims.sub)
            .filter(user::Column::IsActive.eq(true))
            .filter(Expr::exists(live_session))
            .one(self.db.connection())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let session = SessionPrincipal {
            user_id: user.id,
            role: user.role,
        };
        self.sessions.insert(
            ticket,
            claims.sid,
            session,
            vec![format!("user:{}", user.id)],
        );
        Ok(VerifiedToken {
            user_id: user.id,
            role: user.role,
            session_id: Some(claims.sid),
        })
    }
}
