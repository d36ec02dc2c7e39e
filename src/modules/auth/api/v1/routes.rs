//! Sign-up, sessions and the caller's own account.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use secrecy::ExposeSecret;

use crate::core::auth::{Actor, CurrentUser, client_ip};
use crate::core::email::Email;
use crate::core::error::{AppError, ErrorEnvelope};
use crate::core::extract::ValidJson;
use crate::modules::auth::service::{AuthService, TokenPair, UserView};

use super::schemas::{
    ChangePasswordRequest, LoginRequest, RefreshRequest, RegisterRequest, RegisterResponse,
};

/// Creates an account (unless the platform config closed registration).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse),
              (status = 403, description = "registration closed", body = ErrorEnvelope),
              (status = 409, description = "email taken", body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
#[post("/auth/register")]
pub async fn register(
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: ValidJson<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let actor = Actor::anonymous(client_ip(&req));
    let email = Email::parse(&body.email)
        .map_err(|invalid| AppError::validation("email", format!("email: {invalid}")))?;
    let user = auth
        .register(&email, body.password.expose_secret(), body.full_name, actor)
        .await?;
    Ok(HttpResponse::Created().json(RegisterResponse { user }))
}

/// Exchanges credentials for an access token and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair),
              (status = 401, description = "wrong credentials (same answer for an unknown email)", body = ErrorEnvelope),
              (status = 429, description = "too many attempts; see Retry-After", body = ErrorEnvelope)))]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: ValidJson<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let pair = auth
        .login(&body.email, body.password.expose_secret(), client_ip(&req))
        .await?;
    Ok(HttpResponse::Ok().json(pair))
}

/// Spends a refresh token for a new pair. Re-using a spent one revokes its whole family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorEnvelope)))]
#[post("/auth/refresh")]
pub async fn refresh(
    req: HttpRequest,
    auth: web::Data<AuthService>,
    body: ValidJson<RefreshRequest>,
) -> Result<HttpResponse, AppError> {
    let pair = auth
        .refresh(body.refresh_token.expose_secret(), client_ip(&req))
        .await?;
    Ok(HttpResponse::Ok().json(pair))
}

/// Ends the session the refresh token belongs to.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorEnvelope)))]
#[post("/auth/logout")]
pub async fn logout(
    user: CurrentUser,
    auth: web::Data<AuthService>,
    body: ValidJson<RefreshRequest>,
) -> Result<HttpResponse, AppError> {
    auth.logout(user.id, body.refresh_token.expose_secret())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope)))]
#[get("/auth/me")]
pub async fn me(user: CurrentUser, auth: web::Data<AuthService>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(auth.me(user.id).await?))
}

/// Changes the caller's password; their other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/change-password", tag = "auth",
    request_body = ChangePasswordRequest, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
#[post("/auth/change-password")]
pub async fn change_password(
    user: CurrentUser,
    auth: web::Data<AuthService>,
    body: ValidJson<ChangePasswordRequest>,
) -> Result<HttpResponse, AppError> {
    auth.change_password(
        user.id,
        user.session_id,
        body.current_password.expose_secret(),
        body.new_password.expose_secret(),
        user.actor(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
