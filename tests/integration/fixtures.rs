//! Fixtures other tests build on: users (with tokens), admins, projects, members, and
//! requests made as one of them.

use avatar_platform::core::auth::{Actor, PlatformRole};
use avatar_platform::core::email::Email;
use avatar_platform::modules::auth::AuthService;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestResponse};

pub const PASSWORD: &str = "correct horse battery";

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::new_v4().simple())
}

impl TestApp {
    /// Sends `body` (if any) as `user`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<&TestUser>,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut request = self.client.request(method, self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(&user.access_token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    pub async fn get_as(&self, user: &TestUser, path: &str) -> TestResponse {
        self.call(Method::GET, path, Some(user), None).await
    }

    pub async fn post_as(&self, user: &TestUser, path: &str, body: &Value) -> TestResponse {
        self.call(Method::POST, path, Some(user), Some(body)).await
    }

    pub async fn patch_as(&self, user: &TestUser, path: &str, body: &Value) -> TestResponse {
        self.call(Method::PATCH, path, Some(user), Some(body)).await
    }

    pub async fn put_as(&self, user: &TestUser, path: &str, body: &Value) -> TestResponse {
        self.call(Method::PUT, path, Some(user), Some(body)).await
    }

    pub async fn delete_as(&self, user: &TestUser, path: &str) -> TestResponse {
        self.call(Method::DELETE, path, Some(user), None).await
    }

    /// `POST /projects/{project}/avatars` as `owner`.
    pub async fn create_avatar(
        &self,
        owner: &TestUser,
        project: Uuid,
        body: &Value,
    ) -> TestResponse {
        self.post_as(owner, &format!("/api/v1/projects/{project}/avatars"), body)
            .await
    }

    /// A multipart upload of `bytes` as `filename` to an avatar's documents (`path`).
    pub async fn upload(
        &self,
        user: &TestUser,
        path: &str,
        filename: &str,
        bytes: Vec<u8>,
    ) -> TestResponse {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(&user.access_token)
                .multipart(form),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn logged_in(&self, id: Uuid, email: String) -> TestUser {
        let response = self.login(&email, PASSWORD).await;
        assert_eq!(response.status, 200, "login failed: {}", response.text);
        TestUser {
            id,
            email,
            access_token: response.json["access_token"].as_str().unwrap().into(),
            refresh_token: response.json["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// Registers a user through the API and logs them in.
    pub async fn user(&self, tag: &str) -> TestUser {
        let email = unique_email(tag);
        let response = self
            .post_json(
                "/api/v1/auth/register",
                &json!({"email": email, "password": PASSWORD, "full_name": tag}),
            )
            .await;
        assert_eq!(response.status, 201, "register failed: {}", response.text);
        let id = Uuid::parse_str(response.json["user"]["id"].as_str().unwrap()).unwrap();
        self.logged_in(id, email).await
    }

    /// A saas_admin (created the way the CLI does) logged in.
    pub async fn admin(&self) -> TestUser {
        let email = unique_email("admin");
        let created = self
            .service::<AuthService>()
            .create_user(
                &Email::parse(&email).unwrap(),
                PASSWORD,
                None,
                PlatformRole::SaasAdmin,
                Actor::system(),
            )
            .await
            .expect("admin created");
        self.logged_in(created.id.uuid(), email).await
    }

    /// A project owned by `owner`; returns its id.
    pub async fn project(&self, owner: &TestUser, name: &str) -> Uuid {
        let response = self
            .post_as(owner, "/api/v1/projects", &json!({"name": name}))
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap()
    }

    /// An avatar of `project` named `name`, created by `owner`; returns its id.
    pub async fn avatar(&self, owner: &TestUser, project: Uuid, name: &str) -> Uuid {
        let body = json!({"name": name, "system_prompt": "Answer from the documents."});
        let response = self.create_avatar(owner, project, &body).await;
        assert_eq!(response.status, 201, "{}", response.text);
        Uuid::parse_str(response.json["id"].as_str().unwrap()).unwrap()
    }

    /// A new user made a member of `project` with `role` by `owner`.
    pub async fn member(&self, project: Uuid, owner: &TestUser, role: &str) -> TestUser {
        let user = self.user(role).await;
        let response = self
            .post_as(
                owner,
                &format!("/api/v1/projects/{project}/members"),
                &json!({"email": user.email, "role": role}),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        user
    }

    /// Outbox payloads of one event type, oldest first.
    pub async fn events_of_type(&self, event_type: &str) -> Vec<Value> {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};
        self.context
            .db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT payload FROM event_outbox WHERE event_type = $1 ORDER BY created_at, id",
                [event_type.into()],
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.try_get::<Value>("", "payload").unwrap())
            .collect()
    }
}
