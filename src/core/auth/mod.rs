//! Who is calling: the extractors every module's handlers use.
//!
//! - [`CurrentUser`]: a valid `Authorization: Bearer <access token>` of an active user;
//! - [`SaasAdmin`]: the same, with the platform role `saas_admin`;
//! - [`ProjectAccess<R>`]: a member of the project in the path (`{pid}`) with at least role `R`
//!   (saas_admin sees every project as owner). A project the caller may not see answers 404;
//!   one they see with too small a role answers 403;
//! - [`ApiKeyPrincipal<S>`]: a live project API key in `X-Api-Key` allowed the scope `S`
//!   ([`scope::Chat`], [`scope::Embeddings`], or [`scope::Any`]); a key without it answers 403.
//!
//! Core knows no module: the auth and projects modules register the lookups behind these
//! extractors as an [`AuthProviders`] at start-up.

use std::marker::PhantomData;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use async_trait::async_trait;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::ids::{ApiKeyId, AvatarId, ProjectId, UserId};

use crate::core::error::{AppError, ErrorCode};

mod actor;
mod roles;

pub use actor::{Actor, ActorKind};
pub use roles::{PlatformRole, ProjectRole};

/// An authenticated, active user.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: UserId,
    pub role: PlatformRole,
    /// The refresh-token family the access token was issued from (the "session").
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
}

impl CurrentUser {
    pub fn is_saas_admin(&self) -> bool {
        self.role == PlatformRole::SaasAdmin
    }

    pub fn actor(&self) -> Actor {
        Actor::user(self.id, self.ip.clone())
    }
}

/// What an access token proves, once checked against the user's current state.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub user_id: UserId,
    pub role: PlatformRole,
    pub session_id: Option<Uuid>,
}

/// What a project API key may be used for. A key created without scopes may be used for
/// everything (so keys made before scopes existed keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// The public chat API and the OpenAI-compatible chat routes.
    Chat,
    /// The embeddings routes.
    Embeddings,
}

impl ApiScope {
    pub const ALL: [ApiScope; 2] = [ApiScope::Chat, ApiScope::Embeddings];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Chat => "chat",
            ApiScope::Embeddings => "embeddings",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == value)
    }

    /// Whether a key with `granted` scopes may be used for `self` (none granted: all).
    pub fn granted_by(self, granted: &[String]) -> bool {
        granted.is_empty() || granted.iter().any(|scope| scope == self.as_str())
    }
}

/// A live API key, as the projects module resolves it.
#[derive(Debug, Clone)]
pub struct ResolvedApiKey {
    pub key_id: ApiKeyId,
    pub project_id: ProjectId,
    pub name: String,
    pub scopes: Vec<String>,
    /// The avatars the key reaches; `None`: every avatar of its project.
    pub avatar_ids: Option<Vec<AvatarId>>,
}

/// The scope a route needs, as a type: `ApiKeyPrincipal<scope::Chat>`.
pub trait RequiredScope {
    const SCOPE: Option<ApiScope>;
}

pub mod scope {
    use super::{ApiScope, RequiredScope};

    /// Any live key (e.g. to ask what the key is).
    pub struct Any;
    pub struct Chat;
    pub struct Embeddings;

    impl RequiredScope for Any {
        const SCOPE: Option<ApiScope> = None;
    }
    impl RequiredScope for Chat {
        const SCOPE: Option<ApiScope> = Some(ApiScope::Chat);
    }
    impl RequiredScope for Embeddings {
        const SCOPE: Option<ApiScope> = Some(ApiScope::Embeddings);
    }
}

/// A live API key allowed the scope `S`, and the project it belongs to.
pub struct ApiKeyPrincipal<S: RequiredScope = scope::Any> {
    pub key_id: ApiKeyId,
    pub project_id: ProjectId,
    pub name: String,
    pub scopes: Vec<String>,
    /// The avatars the key reaches; `None`: every avatar of its project.
    pub avatar_ids: Option<Vec<AvatarId>>,
    pub ip: Option<String>,
    required: PhantomData<S>,
}

impl<S: RequiredScope> ApiKeyPrincipal<S> {
    /// Whether the key may reach `avatar_id` (of its project: the caller checks that).
    pub fn reaches(&self, avatar_id: AvatarId) -> bool {
        self.avatar_ids
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&avatar_id))
    }
}

impl<S: RequiredScope> std::fmt::Debug for ApiKeyPrincipal<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyPrincipal")
            .field("key_id", &self.key_id)
            .field("project_id", &self.project_id)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Checks an access token (auth module).
#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    async fn verify_access_token(&self, token: &str) -> Result<VerifiedToken, AppError>;
}

/// The caller's role in a project, `None` if they may not see it (projects module).
#[async_trait]
pub trait ProjectRoles: Send + Sync + 'static {
    async fn role_in_project(
        &self,
        project_id: ProjectId,
        user: &CurrentUser,
    ) -> Result<Option<ProjectRole>, AppError>;
}

/// Resolves a presented API key (projects module).
#[async_trait]
pub trait ApiKeys: Send + Sync + 'static {
    async fn resolve_api_key(&self, key: &str) -> Result<Option<ResolvedApiKey>, AppError>;
}

/// The lookups behind the extractors, registered as app data.
#[derive(Clone)]
pub struct AuthProviders {
    pub tokens: Arc<dyn TokenVerifier>,
    pub projects: Arc<dyn ProjectRoles>,
    pub api_keys: Arc<dyn ApiKeys>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

/// The client's IP: the peer address, or — behind a trusted proxy — the right-most
/// `X-Forwarded-For` entry (the one the proxy appended; entries to its left come from the
/// client and can be forged).
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let trusted = req
        .app_data::<web::Data<AuthProviders>>()
        .map(|providers| providers.trust_forwarded_for)
        .unwrap_or(false);
    let forwarded = trusted
        .then(|| {
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .last()
                .map(str::to_owned)
        })
        .flatten();
    let address = forwarded.or_else(|| req.peer_addr().map(|peer| peer.ip().to_string()))?;
    // Entries may carry a port; IPv6 peers may come bracketed.
    Some(match address.parse::<std::net::SocketAddr>() {
        Ok(socket) => socket.ip().to_string(),
        Err(_) => address,
    })
}

/// What a per-client throttle counts: the IPv4 address, or the /64 network of an IPv6 one (a
/// single client usually holds a whole /64 and could rotate through it).
pub fn throttle_address(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let network = std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                );
                format!("{network}/64")
            }
        },
        Ok(ip) => ip.to_string(),
        Err(_) => ip.to_owned(),
    }
}

fn providers(req: &HttpRequest) -> Result<web::Data<AuthProviders>, AppError> {
    req.app_data::<web::Data<AuthProviders>>()
        .cloned()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("AuthProviders are not registered")))
}

fn bearer_token(req: &HttpRequest) -> Result<String, AppError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::AuthenticationRequired,
                "send `Authorization: Bearer <access token>`",
            )
        })?;
    let value = header
        .to_str()
        .map_err(|_| AppError::new(ErrorCode::InvalidToken, "malformed Authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(AppError::new(
            ErrorCode::InvalidToken,
            "the Authorization header must be `Bearer <access token>`",
        )),
    }
}

async fn authenticate(req: HttpRequest) -> Result<CurrentUser, AppError> {
    let token = bearer_token(&req)?;
    let providers = providers(&req)?;
    let verified = providers.tokens.verify_access_token(&token).await?;
    Ok(CurrentUser {
        id: verified.user_id,
        role: verified.role,
        session_id: verified.session_id,
        ip: client_ip(&req),
    })
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

/// A `saas_admin`; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct SaasAdmin(pub CurrentUser);

impl FromRequest for SaasAdmin {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = authenticate(req).await?;
            if !user.is_saas_admin() {
                return Err(AppError::new(
                    ErrorCode::Forbidden,
                    "this needs the saas_admin role",
                ));
            }
            Ok(SaasAdmin(user))
        })
    }
}

/// The least role a route needs, as a type: `ProjectAccess<Manager>`.
pub trait MinimumRole {
    const ROLE: ProjectRole;
}

pub struct Viewer;
pub struct Operator;
pub struct Manager;
pub struct Owner;

impl MinimumRole for Viewer {
    const ROLE: ProjectRole = ProjectRole::Viewer;
}
impl MinimumRole for Operator {
    const ROLE: ProjectRole = ProjectRole::Operator;
}
impl MinimumRole for Manager {
    const ROLE: ProjectRole = ProjectRole::Manager;
}
impl MinimumRole for Owner {
    const ROLE: ProjectRole = ProjectRole::Owner;
}

/// The caller, the project named by `{pid}` in the path, and their role in it (≥ `R`).
pub struct ProjectAccess<R: MinimumRole> {
    pub user: CurrentUser,
    pub project_id: ProjectId,
    pub role: ProjectRole,
    required: PhantomData<R>,
}

impl<R: MinimumRole> std::fmt::Debug for ProjectAccess<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectAccess")
            .field("user", &self.user.id)
            .field("project_id", &self.project_id)
            .field("role", &self.role)
            .finish()
    }
}

impl<R: MinimumRole> ProjectAccess<R> {
    pub fn actor(&self) -> Actor {
        self.user.actor()
    }
}

fn project_not_found() -> AppError {
    AppError::not_found("project")
}

impl<R: MinimumRole + 'static> FromRequest for ProjectAccess<R> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let user = authenticate(req.clone()).await?;
            let project_id = req
                .match_info()
                .get("pid")
                .and_then(|value| Uuid::parse_str(value).ok())
                .map(ProjectId::from_uuid)
                .ok_or_else(project_not_found)?;
            let providers = providers(&req)?;
            let role = providers
                .projects
                .role_in_project(project_id, &user)
                .await?
                .ok_or_else(project_not_found)?;
            if role < R::ROLE {
                return Err(AppError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "this needs the {} role in the project; yours is {}",
                        R::ROLE.as_str(),
                        role.as_str()
                    ),
                ));
            }
            Ok(ProjectAccess {
                user,
                project_id,
                role,
                required: PhantomData,
            })
        })
    }
}

pub const API_KEY_HEADER: &str = "x-api-key";

impl<S: RequiredScope + 'static> FromRequest for ApiKeyPrincipal<S> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let key = req
                .headers()
                .get(API_KEY_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::AuthenticationRequired,
                        "send the project API key in `X-Api-Key`",
                    )
                })?
                .to_owned();
            ApiKeyPrincipal::resolve(&req, &key).await
        })
    }
}

impl<S: RequiredScope> ApiKeyPrincipal<S> {
    /// The principal of a presented `key` (however the route takes it): 401 when it is unknown
    /// or revoked, 403 when it lacks the scope `S`.
    pub async fn resolve(req: &HttpRequest, key: &str) -> Result<Self, AppError> {
        let resolved = providers(req)?
            .api_keys
            .resolve_api_key(key)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::InvalidToken, "unknown or revoked API key"))?;
        if let Some(scope) = S::SCOPE
            && !scope.granted_by(&resolved.scopes)
        {
            return Err(AppError::new(
                ErrorCode::Forbidden,
                format!("this API key lacks the `{}` scope", scope.as_str()),
            ));
        }
        Ok(ApiKeyPrincipal {
            key_id: resolved.key_id,
            project_id: resolved.project_id,
            name: resolved.name,
            scopes: resolved.scopes,
            avatar_ids: resolved.avatar_ids,
            ip: client_ip(req),
            required: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::throttle_address;

    #[test]
    fn ipv6_clients_are_throttled_by_their_64_network() {
        assert_eq!(
            throttle_address("2001:db8:1:2:aaaa::1"),
            throttle_address("2001:db8:1:2:bbbb::9")
        );
        assert_eq!(throttle_address("2001:db8:1:2::7"), "2001:db8:1:2::/64");
        assert_ne!(
            throttle_address("2001:db8:1:2::1"),
            throttle_address("2001:db8:1:3::1")
        );
        assert_eq!(throttle_address("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(throttle_address("203.0.113.9"), "203.0.113.9");
        assert_ne!(
            throttle_address("203.0.113.9"),
            throttle_address("203.0.113.10")
        );
    }
}
