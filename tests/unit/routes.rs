//! A request's route (the label of its metrics and access-log line): the documented path
//! template its path is an instance of.

use avatar_platform::core::openapi::RouteTable;
use avatar_platform::modules::openapi_document;

/// `template` with each parameter replaced by an id.
fn instance(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "0193a1b2-7c4d-7000-8000-00000000002a"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_documented_path_is_labelled_with_its_own_template() {
    let document = openapi_document();
    let routes = RouteTable::from_document(&document);
    let templates: Vec<&String> = document.paths.paths.keys().collect();
    assert!(templates.len() > 50, "{templates:?}");
    for template in templates {
        assert_eq!(
            routes.template(&instance(template)),
            Some(template.as_str()),
            "{template}"
        );
    }
}

#[test]
fn literal_segments_win_and_other_paths_have_no_template() {
    let routes = RouteTable::from_document(&openapi_document());
    assert_eq!(
        routes.template("/api/v1/telegram/webhook/7000000001"),
        Some("/api/v1/telegram/webhook/{bot_id}")
    );
    assert_eq!(
        routes.template("/api/v1/projects"),
        Some("/api/v1/projects")
    );
    assert_eq!(routes.template("/health"), Some("/health"));
    for path in [
        "/api/v1/nope",
        "/api/v1/projects/",
        "/api/v1/projects/1/nope",
        "/docs/index.html",
        "",
    ] {
        assert_eq!(routes.template(path), None, "{path}");
    }
}
