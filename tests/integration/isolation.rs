//! The tenant-isolation matrix, generated from the OpenAPI document: every operation whose
//! path names a tenant's resource is called by a second tenant — with their user token, or
//! their API key on the API-key routes — on the first tenant's ids, with a body that would
//! fail validation. It must answer 404, as for an id that does not exist (403 on the platform
//! admin's routes, 401 on the Telegram webhooks, which have no tenant), so a body check made
//! before the tenancy check cannot tell a real id from a made-up one. Inside the second
//! tenant's own project (their project id, the first's child ids) the body may be checked
//! first, since the caller may use the route; there the answer for the first tenant's real ids
//! must be the same as for made-up ones, and never a success. An operation with a path
//! parameter this test does not know fails it: a new route needs its row here.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::TestUser;
use crate::helpers::{AppOptions, TestApp, spawn_app_with};

/// The first tenant's resources, by the path parameter that names them.
struct Tenant {
    owner: TestUser,
    pid: Uuid,
    aid: Uuid,
    slug: String,
    did: Uuid,
    cid: Uuid,
    eid: Uuid,
    key_id: Uuid,
    key: String,
    member: Uuid,
    invitation: Uuid,
}

async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let owner = app.user(name).await;
    let pid = app.project(&owner, name).await;
    let avatar = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars"),
            &json!({"name": format!("{name} avatar"), "system_prompt": "Answer."}),
        )
        .await;
    assert_eq!(avatar.status, 201, "{}", avatar.text);
    let aid = id(&avatar.json);
    let slug = avatar.json["slug"].as_str().unwrap().to_owned();
    let uploaded = app
        .upload(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars/{aid}/documents"),
            "note.txt",
            b"Our office opens at nine.".to_vec(),
        )
        .await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let conversation = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/avatars/{aid}/conversations"),
            &json!({}),
        )
        .await;
    assert_eq!(conversation.status, 201, "{}", conversation.text);
    let key = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/api-keys"),
            &json!({"name": "site"}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let secret = key.json["key"].as_str().unwrap().to_owned();
    // An end user, by the public chat API (retrieval-only: no LLM is configured).
    let asked = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/public/avatars/{aid}/chat")))
                .header("X-Api-Key", &secret)
                .json(&json!({"end_user": {"external_id": "visitor"}, "message": "When?"})),
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    let member = app.user(&format!("{name}-member")).await;
    let added = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/members"),
            &json!({"email": member.email, "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let invited = app
        .post_as(
            &owner,
            &format!("/api/v1/projects/{pid}/members"),
            &json!({"email": format!("{}@invited.example", Uuid::new_v4()), "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 202, "{}", invited.text);
    let secret_put = app
        .put_as(
            &owner,
            &format!("/api/v1/projects/{pid}/secrets/LLM_API_KEY"),
            &json!({"value": "sk-tenant"}),
        )
        .await;
    assert_eq!(secret_put.status, 204, "{}", secret_put.text);
    Tenant {
        pid,
        aid,
        slug,
        did: id(&uploaded.json),
        cid: id(&conversation.json),
        eid: Uuid::parse_str(asked.json["end_user"]["id"].as_str().unwrap()).unwrap(),
        key_id: id(&key.json),
        key: secret,
        member: member.id,
        invitation: id(&invited.json),
        owner,
    }
}

fn id(json: &Value) -> Uuid {
    Uuid::parse_str(json["id"].as_str().expect("an id")).unwrap()
}

/// What the second tenant must get on an operation, by where it lives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A project's resource, with the second tenant's user token.
    NotFoundByToken,
    /// An API-key route, with the second tenant's key.
    NotFoundByKey,
    /// The platform admin's.
    Forbidden,
    /// Telegram's webhooks: a secret, no tenant.
    Unauthorized,
}

fn expectation(path: &str) -> Option<Expect> {
    let path = path.strip_prefix("/api/v1")?;
    if path.starts_with("/admin/") {
        Some(Expect::Forbidden)
    } else if path.starts_with("/telegram/webhook/")
        || path.starts_with("/notifications/telegram/webhook/")
    {
        Some(Expect::Unauthorized)
    } else if path.starts_with("/public/") || path.starts_with("/openai/") {
        Some(Expect::NotFoundByKey)
    } else if path.starts_with("/projects/{pid}") {
        Some(Expect::NotFoundByToken)
    } else {
        None
    }
}

/// `path` with its parameters filled from `first` (or, with `made_up`, ids that exist
/// nowhere); `pid` from `pid` (the first's or the second's own). `Err` names a parameter this
/// test does not know.
fn filled(path: &str, first: &Tenant, pid: Uuid, made_up: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|at| open + at).unwrap();
        let name = &rest[open + 1..close];
        let value = match (name, path) {
            ("pid", _) => pid.to_string(),
            ("model", _) if made_up => "no-such-model".to_owned(),
            ("aid" | "did" | "cid" | "eid" | "user_id" | "id", _) if made_up => {
                Uuid::new_v4().to_string()
            }
            ("aid", _) => first.aid.to_string(),
            ("did", _) => first.did.to_string(),
            ("cid", _) => first.cid.to_string(),
            ("eid", _) => first.eid.to_string(),
            ("user_id", _) => first.member.to_string(),
            ("model", _) => first.slug.clone(),
            ("name", _) => "LLM_API_KEY".to_owned(),
            ("bot_id", _) => "4242".to_owned(),
            ("code", _) => "default".to_owned(),
            ("id", p) if p.contains("/api-keys/") => first.key_id.to_string(),
            ("id", p) if p.contains("/invitations/") => first.invitation.to_string(),
            ("id", p) if p.starts_with("/api/v1/admin/") => Uuid::new_v4().to_string(),
            _ => return Err(format!("{name} in {path}")),
        };
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[tokio::test]
async fn another_tenants_ids_answer_404_on_every_route_before_the_body_is_read() {
    let app = spawn_app_with(AppOptions {
        workers: 1,
        ..AppOptions::default()
    })
    .await;
    let first = tenant(&app, "first").await;
    let second = tenant(&app, "second").await;
    let document = app.get("/openapi.json").await;
    assert_eq!(document.status, 200);

    let mut unknown = Vec::new();
    let mut leaks = Vec::new();
    let mut checked = 0;
    for (path, item) in document.json["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        let Some(expect) = expectation(path) else {
            unknown.push(format!("no expectation for {path}"));
            continue;
        };
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !matches!(
                method,
                Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) {
                continue;
            }
            let send = |url: String| {
                let mut request = app.client.request(method.clone(), app.url(&url));
                request = match expect {
                    Expect::NotFoundByKey => request.header("X-Api-Key", &second.key),
                    _ => request.bearer_auth(&second.owner.access_token),
                };
                if operation.get("requestBody").is_some() {
                    // Fails every request schema: a body check first would answer 400/422.
                    request = request.json(&json!({"unexpected_field": [1, 2, 3]}));
                }
                app.send(request)
            };
            let url = match filled(path, &first, first.pid, false) {
                Ok(url) => url,
                Err(parameter) => {
                    unknown.push(parameter);
                    continue;
                }
            };
            let response = send(url.clone()).await;
            checked += 1;
            let wanted = match expect {
                Expect::NotFoundByToken | Expect::NotFoundByKey => 404,
                Expect::Forbidden => 403,
                Expect::Unauthorized => 401,
            };
            if response.status != wanted {
                leaks.push(format!(
                    "{method} {url} ({path}): {} {}",
                    response.status,
                    response.text.chars().take(200).collect::<String>()
                ));
            }
            // The second tenant's own project, with the first's child ids (a secret's name
            // is not an id: the second has its own secret of that name).
            let children = path.matches('{').count() > 1 && !path.ends_with("{name}");
            if expect == Expect::NotFoundByToken && children {
                let real = filled(path, &first, second.pid, false).unwrap();
                let made_up = filled(path, &first, second.pid, true).unwrap();
                let (real_answer, made_up_answer) = (send(real.clone()).await, send(made_up).await);
                checked += 2;
                if real_answer.status != made_up_answer.status || real_answer.status < 400 {
                    leaks.push(format!(
                        "{method} {real} ({path}): {} for the first tenant's ids, {} for made-up                          ones: {}",
                        real_answer.status,
                        made_up_answer.status,
                        real_answer.text.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "operations this matrix does not cover: {unknown:#?}"
    );
    assert!(
        leaks.is_empty(),
        "answers that are not the tenant boundary's: {leaks:#?}"
    );
    assert!(checked >= 55, "only {checked} calls");

    // The first tenant's own calls still work: the ids were real.
    let own = app
        .get_as(
            &first.owner,
            &format!("/api/v1/projects/{}/avatars/{}", first.pid, first.aid),
        )
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    let own_model = app
        .send(
            app.client
                .get(app.url(&format!("/api/v1/openai/models/{}", first.slug)))
                .bearer_auth(&first.key),
        )
        .await;
    assert_eq!(own_model.status, 200, "{}", own_model.text);
}
