//! Settings: layering, environment overrides, and one clear line for a bad setting.

use std::path::PathBuf;

use avatar_platform::core::config::{Environment, LogFormat, Settings};
use avatar_platform::modules::documents::ParseLimits;
use secrecy::ExposeSecret;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    Settings::load_from(&config_dir(), &env(pairs)).map_err(|error| error.to_string())
}

const DB: (&str, &str) = ("DATABASE_URL", "postgres://app:pw@localhost:5432/app");

#[test]
fn test_environment_layers_defaults_then_its_file() {
    let settings = load(&[("APP_ENV", "test"), DB]).unwrap();
    assert_eq!(settings.environment, Environment::Test);
    assert_eq!(settings.server.bind, "127.0.0.1:8000");
    assert_eq!(settings.jobs.poll_interval_ms, 50, "from test.toml");
    assert_eq!(settings.jobs.workers, 2, "from default.toml");
    assert_eq!(settings.data_dir, PathBuf::from(".data"));
    assert_eq!(
        settings.database.url.expose_secret(),
        "postgres://app:pw@localhost:5432/app"
    );
}

#[test]
fn app_variables_override_files_and_common_names_are_understood() {
    let settings = load(&[
        ("APP_ENV", "test"),
        DB,
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("DATA_DIR", "/tmp/somewhere"),
        ("APP__SERVER__BIND", "0.0.0.0:9000"),
        ("APP__JOBS__WORKERS", "7"),
        (
            "APP__SERVER__CORS_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        ),
        ("APP__TELEMETRY__LOG_FORMAT", "json"),
        ("APP__STORAGE__S3__PATH_STYLE", "false"),
    ])
    .unwrap();
    assert_eq!(settings.server.bind, "0.0.0.0:9000");
    assert_eq!(settings.jobs.workers, 7);
    assert_eq!(
        settings.server.cors_allowed_origins,
        vec!["https://a.example", "https://b.example"]
    );
    assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    assert_eq!(
        settings.cache.redis_url.as_deref(),
        Some("redis://127.0.0.1:6379")
    );
    assert!(!settings.storage.s3.path_style);
    assert_eq!(settings.data_dir, PathBuf::from("/tmp/somewhere"));
}

#[test]
fn a_misspelt_app_variable_stops_start_up_naming_it() {
    let error = load(&[("APP_ENV", "test"), DB, ("APP__SERVER__BIDN", "x")]).unwrap_err();
    assert_eq!(
        error,
        "setting `APP__SERVER__BIDN` is invalid: no setting `server.bidn` exists (see config/default.toml)"
    );
}

#[test]
fn an_invalid_value_names_the_key() {
    let error = load(&[("APP_ENV", "test"), DB, ("APP__JOBS__WORKERS", "many")]).unwrap_err();
    assert!(error.contains("jobs.workers"), "{error}");
    let error = load(&[("APP_ENV", "test"), DB, ("APP__SERVER__BIND", "nowhere")]).unwrap_err();
    assert!(
        error.starts_with("setting `server.bind` is invalid"),
        "{error}"
    );
    let error = load(&[("APP_ENV", "staging"), DB]).unwrap_err();
    assert!(error.starts_with("setting `APP_ENV` is invalid"), "{error}");
}

#[test]
fn index_settings_outside_pgvector_bounds_or_not_a_size_are_refused() {
    let settings = load(&[("APP_ENV", "test"), DB]).unwrap();
    assert_eq!(settings.retrieval.index_build_memory, "1GB");
    assert!(settings.retrieval.hnsw_ef_construction >= 2 * settings.retrieval.hnsw_m);
    for (key, value, named) in [
        // Given to PostgreSQL as a literal: anything but a size is refused.
        (
            "APP__RETRIEVAL__INDEX_BUILD_MEMORY",
            "1GB'; DROP TABLE documents; --",
            "retrieval.index_build_memory",
        ),
        (
            "APP__RETRIEVAL__INDEX_BUILD_MEMORY",
            "lots",
            "retrieval.index_build_memory",
        ),
        ("APP__RETRIEVAL__HNSW_M", "1", "retrieval.hnsw_m"),
        (
            "APP__RETRIEVAL__HNSW_EF_CONSTRUCTION",
            "20",
            "retrieval.hnsw_ef_construction",
        ),
        (
            "APP__RETRIEVAL__HNSW_EF_SEARCH",
            "0",
            "retrieval.hnsw_ef_search",
        ),
    ] {
        let error = load(&[("APP_ENV", "test"), DB, (key, value)]).unwrap_err();
        assert!(
            error.starts_with(&format!("setting `{named}` is invalid")),
            "{key}={value}: {error}"
        );
    }
    let settings = load(&[
        ("APP_ENV", "test"),
        DB,
        ("APP__RETRIEVAL__INDEX_BUILD_MEMORY", "512MB"),
    ])
    .unwrap();
    assert_eq!(settings.retrieval.index_build_memory, "512MB");
}

#[test]
fn timeouts_limits_and_the_fairness_cap_are_checked_against_each_other() {
    let settings = load(&[("APP_ENV", "test"), DB]).unwrap();
    let documents = &settings.documents;
    // What parsing without settings (tests, benches, fuzz targets) assumes is the default.
    assert_eq!(ParseLimits::from(documents), ParseLimits::default());
    assert!(documents.parse_cpu_secs <= documents.parse_timeout_secs);
    assert!(documents.parse_timeout_secs <= documents.processing_timeout_secs);
    assert!(documents.job_timeout().as_secs() > documents.processing_timeout_secs);
    assert!((documents.max_processing_per_project as usize) < settings.jobs.workers);
    for (pairs, named) in [
        (
            vec![("APP__DOCUMENTS__PARSE_TIMEOUT_SECS", "900")],
            "documents.parse_timeout_secs",
        ),
        (
            vec![("APP__DOCUMENTS__PARSE_CPU_SECS", "301")],
            "documents.parse_cpu_secs",
        ),
        (
            vec![("APP__DOCUMENTS__STALE_AFTER_SECS", "5")],
            "documents.stale_after_secs",
        ),
        (
            // The heartbeat beats every third of it: below 3 s it would beat every 0 s.
            vec![("APP__JOBS__STALE_AFTER_SECS", "2")],
            "jobs.stale_after_secs",
        ),
        (
            vec![("APP__DOCUMENTS__MAX_PROCESSING_PER_PROJECT", "2")],
            "documents.max_processing_per_project",
        ),
        (
            vec![("APP__DOCUMENTS__PARSE_MEMORY_MB", "10")],
            "documents.parse_memory_mb",
        ),
        (
            // More than half of the parser's 2048 MB.
            vec![("APP__DOCUMENTS__DOCX_MAX_UNCOMPRESSED_BYTES", "1100000000")],
            "documents.docx_max_uncompressed_bytes",
        ),
        (
            vec![("APP__DOCUMENTS__PDF_MAX_PAGES", "0")],
            "documents.pdf_max_pages",
        ),
        (
            vec![("APP__OUTBOUND__ALLOWED_HOSTS", "llm.internal, not a host!")],
            "outbound.allowed_hosts",
        ),
    ] {
        let mut all = vec![("APP_ENV", "test"), DB];
        all.extend(pairs.iter().copied());
        let error = load(&all).unwrap_err();
        assert!(
            error.starts_with(&format!("setting `{named}` is invalid")),
            "{pairs:?}: {error}"
        );
    }
    // With one worker there is nothing to share: the cap may equal it.
    assert!(
        load(&[
            ("APP_ENV", "test"),
            DB,
            ("APP__JOBS__WORKERS", "1"),
            ("APP__DOCUMENTS__MAX_PROCESSING_PER_PROJECT", "1"),
        ])
        .is_ok()
    );
    let allowed = load(&[
        ("APP_ENV", "test"),
        DB,
        ("APP__OUTBOUND__ALLOWED_HOSTS", "llm.internal, 10.0.0.0/8"),
    ])
    .unwrap();
    assert_eq!(
        allowed.outbound.allowed_hosts,
        vec!["llm.internal".to_owned(), "10.0.0.0/8".to_owned()]
    );
}

#[test]
fn a_missing_database_url_is_named() {
    let error = load(&[("APP_ENV", "test")]).unwrap_err();
    assert!(
        error.starts_with("setting `database.url` is required"),
        "{error}"
    );
}

#[test]
fn production_refuses_to_start_without_secrets() {
    let error = load(&[("APP_ENV", "production"), DB]).unwrap_err();
    assert!(
        error.starts_with("setting `secrets.jwt_secret` is required"),
        "{error}"
    );

    let data_dir = tempfile::tempdir().unwrap();
    let data_dir = data_dir.path().display().to_string();
    let error = load(&[
        ("APP_ENV", "production"),
        DB,
        ("DATA_DIR", &data_dir),
        (
            "APP__SECRETS__JWT_SECRET",
            "0123456789abcdef0123456789abcdef-long",
        ),
    ])
    .unwrap_err();
    assert!(
        error.starts_with("setting `secrets.encryption_key` is required"),
        "{error}"
    );

    let error = load(&[
        ("APP_ENV", "production"),
        DB,
        ("APP__SECRETS__JWT_SECRET", "short"),
        ("APP__SECRETS__ENCRYPTION_KEY", &"ab".repeat(32)),
    ])
    .unwrap_err();
    assert!(error.contains("at least 32 characters"), "{error}");
}

#[test]
fn development_generates_secrets_once_and_keeps_them() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().display().to_string();
    let first = load(&[("APP_ENV", "development"), DB, ("DATA_DIR", &dir)]).unwrap();
    let second = load(&[("APP_ENV", "development"), DB, ("DATA_DIR", &dir)]).unwrap();
    assert_eq!(
        first.secrets.jwt_secret.expose_secret(),
        second.secrets.jwt_secret.expose_secret()
    );
    assert_eq!(first.secrets.encryption_key.expose_secret().len(), 64);
    assert!(data_dir.path().join("secrets/jwt_secret").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.path().join("secrets/encryption_key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn debug_output_never_shows_secrets_or_passwords() {
    let settings = load(&[("APP_ENV", "test"), DB]).unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("pw@"), "{printed}");
    assert!(!printed.contains(settings.secrets.jwt_secret.expose_secret()));
    assert!(!printed.contains(settings.secrets.encryption_key.expose_secret()));
    assert_eq!(
        settings.database_url_redacted(),
        "postgres://app:***@localhost:5432/app"
    );
}
