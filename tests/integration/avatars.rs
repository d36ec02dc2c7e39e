//! Avatars over HTTP: defaults, validation, partial updates, soft delete, roles, tenancy.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};

fn avatar_body() -> serde_json::Value {
    json!({"name": "Support", "system_prompt": "You answer questions about our product."})
}

#[tokio::test]
async fn an_avatar_is_created_with_documented_defaults_and_can_be_changed_and_deleted() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let base = format!("/api/v1/projects/{pid}/avatars");

    let created = app.post_as(&owner, &base, &avatar_body()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let avatar = &created.json;
    assert_eq!(avatar["status"], "active");
    assert_eq!(avatar["project_id"], pid.to_string());
    assert_eq!(
        avatar["llm"],
        json!({"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 1024})
    );
    assert_eq!(
        avatar["rag"],
        json!({"top_k": 5, "similarity_threshold": 0.0, "chunk_size": 512, "chunk_overlap": 64, "language": "english",
               "chunk_size_in_use": 512, "chunk_overlap_in_use": 64})
    );
    let aid = avatar["id"].as_str().unwrap().to_owned();

    let custom = app
        .post_as(
            &owner,
            &base,
            &json!({"name": "Sales", "system_prompt": "Sell.", "greeting": "Hi!",
                    "llm": {"model": "llama3", "temperature": 0.1},
                    "rag": {"top_k": 8, "chunk_size": 200}}),
        )
        .await;
    assert_eq!(custom.json["llm"]["model"], "llama3");
    assert_eq!(custom.json["llm"]["max_tokens"], 1024);
    assert_eq!(custom.json["rag"]["chunk_size"], 200);
    assert_eq!(
        custom.json["rag"]["chunk_overlap"], 50,
        "default overlap capped at a quarter"
    );

    let list = app.get_as(&owner, &base).await;
    assert_eq!(list.json["total"], 2);
    assert_eq!(list.json["items"][0]["id"], aid.as_str());

    let updated = app
        .patch_as(
            &owner,
            &format!("{base}/{aid}"),
            &json!({"status": "disabled", "llm": {"temperature": 1.5}, "greeting": "Hello"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["status"], "disabled");
    assert_eq!(updated.json["llm"]["temperature"], 1.5);
    assert_eq!(updated.json["llm"]["model"], "gpt-4o-mini", "untouched");
    assert_eq!(updated.json["greeting"], "Hello");
    let events = app.events_of_type("avatars.avatar_updated").await;
    assert_eq!(
        events[0]["event"]["fields"],
        json!(["greeting", "llm.temperature", "status"])
    );

    assert_eq!(
        app.delete_as(&owner, &format!("{base}/{aid}")).await.status,
        204
    );
    app.get_as(&owner, &format!("{base}/{aid}"))
        .await
        .error(404, "NOT_FOUND");
    app.delete_as(&owner, &format!("{base}/{aid}"))
        .await
        .error(404, "NOT_FOUND");
    assert_eq!(app.get_as(&owner, &base).await.json["total"], 1);
    assert_eq!(app.events_of_type("avatars.avatar_deleted").await.len(), 1);
}

#[tokio::test]
async fn avatar_settings_are_validated_naming_the_field() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let base = format!("/api/v1/projects/{pid}/avatars");
    let cases = [
        (
            json!({"name": "a", "system_prompt": "x", "llm": {"temperature": 2.5}}),
            "llm.temperature",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "llm": {"max_tokens": 0}}),
            "llm.max_tokens",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "rag": {"top_k": 0}}),
            "rag.top_k",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "rag": {"similarity_threshold": 1.5}}),
            "rag.similarity_threshold",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "rag": {"chunk_size": 100, "chunk_overlap": 100}}),
            "rag.chunk_overlap",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "rag": {"language": "klingon"}}),
            "rag.language",
        ),
        (
            json!({"name": "a", "system_prompt": "x", "rag": {"chunk_sise": 100}}),
            "rag.chunk_sise",
        ),
        (json!({"name": "a"}), "system_prompt"),
        (json!({"name": "", "system_prompt": "x"}), "name"),
    ];
    for (body, field) in cases {
        let response = app.post_as(&owner, &base, &body).await;
        assert_eq!(
            response.error(422, "VALIDATION_ERROR")["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(
        app.get_as(&owner, &base).await.json["total"],
        0,
        "nothing half-written"
    );

    let aid = app.post_as(&owner, &base, &avatar_body()).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The overlap rule also holds against the stored size.
    let response = app
        .patch_as(
            &owner,
            &format!("{base}/{aid}"),
            &json!({"rag": {"chunk_overlap": 600}}),
        )
        .await;
    assert_eq!(
        response.error(422, "VALIDATION_ERROR")["field"],
        "rag.chunk_overlap"
    );
    let response = app
        .patch_as(
            &owner,
            &format!("{base}/{aid}"),
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(response.error(422, "VALIDATION_ERROR")["field"], "status");
}

#[tokio::test]
async fn viewers_read_avatars_and_managers_change_them() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let base = format!("/api/v1/projects/{pid}/avatars");
    let aid = app.post_as(&owner, &base, &avatar_body()).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = app.member(pid, &owner, "viewer").await;
    let operator = app.member(pid, &owner, "operator").await;
    let manager = app.member(pid, &owner, "manager").await;

    assert_eq!(app.get_as(&viewer, &base).await.status, 200);
    assert_eq!(
        app.get_as(&viewer, &format!("{base}/{aid}")).await.status,
        200
    );
    for user in [&viewer, &operator] {
        app.post_as(user, &base, &avatar_body())
            .await
            .error(403, "FORBIDDEN");
        app.patch_as(user, &format!("{base}/{aid}"), &json!({"name": "x"}))
            .await
            .error(403, "FORBIDDEN");
        app.delete_as(user, &format!("{base}/{aid}"))
            .await
            .error(403, "FORBIDDEN");
    }
    assert_eq!(
        app.post_as(&manager, &base, &avatar_body()).await.status,
        201
    );
    assert_eq!(
        app.patch_as(&manager, &format!("{base}/{aid}"), &json!({"name": "x"}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.delete_as(&manager, &format!("{base}/{aid}"))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn another_projects_avatar_answers_404_however_it_is_addressed() {
    let app = spawn_app().await;
    let owner_a = app.user("a").await;
    let owner_b = app.user("b").await;
    let pid_a = app.project(&owner_a, "a").await;
    let pid_b = app.project(&owner_b, "b").await;
    let aid_b = app
        .post_as(
            &owner_b,
            &format!("/api/v1/projects/{pid_b}/avatars"),
            &avatar_body(),
        )
        .await
        .json["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Through A's own project: the avatar is not in it.
    let own = format!("/api/v1/projects/{pid_a}/avatars/{aid_b}");
    app.get_as(&owner_a, &own).await.error(404, "NOT_FOUND");
    app.patch_as(&owner_a, &own, &json!({"name": "stolen"}))
        .await
        .error(404, "NOT_FOUND");
    app.delete_as(&owner_a, &own).await.error(404, "NOT_FOUND");
    // Through B's project: A is not a member.
    let theirs = format!("/api/v1/projects/{pid_b}/avatars/{aid_b}");
    app.get_as(&owner_a, &theirs).await.error(404, "NOT_FOUND");
    app.get_as(&owner_a, &format!("/api/v1/projects/{pid_b}/avatars"))
        .await
        .error(404, "NOT_FOUND");
    app.post_as(
        &owner_a,
        &format!("/api/v1/projects/{pid_b}/avatars"),
        &avatar_body(),
    )
    .await
    .error(404, "NOT_FOUND");
    // Untouched.
    let intact = app.get_as(&owner_b, &theirs).await;
    assert_eq!(intact.json["name"], "Support");
    app.get_as(
        &owner_b,
        &format!("/api/v1/projects/{pid_b}/avatars/{}", Uuid::now_v7()),
    )
    .await
    .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn with_the_local_model_an_avatar_shows_its_chunks_capped_to_the_model_s_window() {
    let app = spawn_app_with(AppOptions {
        overrides: &[("APP__EMBEDDINGS__PROVIDER", "local")],
        ..AppOptions::default()
    })
    .await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let base = format!("/api/v1/projects/{pid}/avatars");
    let created = app.post_as(&owner, &base, &avatar_body()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.json["rag"],
        json!({"top_k": 5, "similarity_threshold": 0.0, "chunk_size": 512, "chunk_overlap": 64, "language": "english",
               "chunk_size_in_use": 254, "chunk_overlap_in_use": 31})
    );
    let small = app
        .post_as(
            &owner,
            &base,
            &json!({"name": "Small", "system_prompt": "Be brief.",
                    "rag": {"chunk_size": 200, "chunk_overlap": 20}}),
        )
        .await;
    assert_eq!(small.json["rag"]["chunk_size_in_use"], 200);
    assert_eq!(small.json["rag"]["chunk_overlap_in_use"], 20);
}

#[tokio::test]
async fn slugs_come_from_names_are_unique_among_live_avatars_and_can_be_chosen() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let pid = app.project(&owner, "p").await;
    let base = format!("/api/v1/projects/{pid}/avatars");
    let create = |body: serde_json::Value| {
        let (app, owner, base) = (&app, &owner, base.clone());
        async move { app.post_as(owner, &base, &body).await }
    };
    let prompt = "You answer.";

    // From the name, transliterated; a repeated name gets the next free suffix.
    let mut slugs = Vec::new();
    // (The default plan allows three avatars.)
    for name in ["Café Support", "CAFE support!"] {
        let created = create(json!({"name": name, "system_prompt": prompt})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        slugs.push(created.json["slug"].as_str().unwrap().to_owned());
    }
    assert_eq!(slugs, ["cafe-support", "cafe-support-2"]);

    // Chosen: checked, and unique (409 naming the field) — in another project it is free.
    let taken =
        create(json!({"name": "Other", "slug": "cafe-support", "system_prompt": prompt})).await;
    assert_eq!(taken.error(409, "CONFLICT")["field"], "slug");
    let chosen =
        create(json!({"name": "Sales", "slug": "sales-desk", "system_prompt": prompt})).await;
    assert_eq!(chosen.status, 201, "{}", chosen.text);
    assert_eq!(chosen.json["slug"], "sales-desk");
    for bad in [
        "Sales Desk",
        "-x",
        "a--b",
        "01a241a6-a01a-7358-86ce-63cbabcdf47b",
    ] {
        let refused = create(json!({"name": "Bad", "slug": bad, "system_prompt": prompt})).await;
        assert_eq!(
            refused.error(422, "VALIDATION_ERROR")["field"],
            "slug",
            "{bad}"
        );
    }
    let other_owner = app.user("other").await;
    let other = app.project(&other_owner, "q").await;
    let elsewhere = app
        .post_as(
            &other_owner,
            &format!("/api/v1/projects/{other}/avatars"),
            &json!({"name": "Sales", "slug": "sales-desk", "system_prompt": prompt}),
        )
        .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);

    // Changed by PATCH (renaming keeps it); taking another avatar's is refused.
    let sid = chosen.json["id"].as_str().unwrap();
    let renamed = app
        .patch_as(
            &owner,
            &format!("{base}/{sid}"),
            &json!({"name": "Sales team"}),
        )
        .await;
    assert_eq!(renamed.json["slug"], "sales-desk", "{}", renamed.text);
    let clash = app
        .patch_as(
            &owner,
            &format!("{base}/{sid}"),
            &json!({"slug": "cafe-support"}),
        )
        .await;
    assert_eq!(clash.error(409, "CONFLICT")["field"], "slug");
    let moved = app
        .patch_as(&owner, &format!("{base}/{sid}"), &json!({"slug": "sales"}))
        .await;
    assert_eq!(moved.json["slug"], "sales", "{}", moved.text);

    // A deleted avatar's slug is free again.
    let first = app.get_as(&owner, &base).await.json["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete_as(&owner, &format!("{base}/{first}"))
            .await
            .status,
        204
    );
    let again = create(json!({"name": "Café Support", "system_prompt": prompt})).await;
    assert_eq!(again.json["slug"], "cafe-support", "{}", again.text);
}
