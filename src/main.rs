//! The `avatar-platform` binary: serve | worker | migrate | openapi.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use avatar_platform::app::{Application, RunOptions};
use avatar_platform::core::auth::{Actor, PlatformRole};
use avatar_platform::core::config::Settings;
use avatar_platform::core::email::Email;
use avatar_platform::core::embeddings::TokenUnit;
use avatar_platform::core::{db, telemetry};
use avatar_platform::modules::auth::AuthService;
use avatar_platform::modules::documents::{
    ChildLimits, DocumentFormat, DocumentsService, ParseLimits, ParseRequest,
    parse_document_command,
};
use clap::{Parser, Subcommand};
use sea_orm_migration::MigratorTrait;

#[derive(Parser)]
#[command(
    name = "avatar-platform",
    version,
    about = "Multi-tenant backend for RAG-powered AI avatars"
)]
struct Cli {
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "APP_CONFIG_DIR", default_value = "config", global = true)]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP server plus in-process job workers.
    Serve {
        /// HOST:PORT to listen on (default: server.bind, 127.0.0.1:8000).
        #[arg(long)]
        bind: Option<String>,
        /// Job workers in this process (default: jobs.workers); 0 for none.
        #[arg(long)]
        workers: Option<usize>,
        /// Do not apply pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Job workers only (scale-out).
    Worker {
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the OpenAPI 3.1 document as JSON.
    Openapi,
    /// Document maintenance.
    Documents {
        #[command(subcommand)]
        action: DocumentsAction,
    },
    /// Administration from the command line.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Internal: parses and chunks one document from stdin in a limited child process (the
    /// server runs it for every document; see documents.parser_program).
    #[command(name = "parse-document", hide = true)]
    ParseDocument {
        #[arg(long, value_parser = parse_format)]
        format: DocumentFormat,
        #[arg(long)]
        chunk_size: usize,
        #[arg(long)]
        chunk_overlap: usize,
        #[arg(long)]
        max_chunks: usize,
        #[arg(long)]
        docx_max_uncompressed_bytes: u64,
        #[arg(long)]
        pdf_max_pages: usize,
        /// Size chunks in the word pieces of this `tokenizer.json` (default: cl100k tokens).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        cpu_secs: u64,
        #[arg(long)]
        memory_mb: u64,
    },
}

fn parse_format(value: &str) -> Result<DocumentFormat, String> {
    DocumentFormat::parse(value).ok_or_else(|| format!("unknown document format `{value}`"))
}

#[derive(Subcommand)]
enum DocumentsAction {
    /// After an embedding model or dimension change: drop every chunk, set the vector column
    /// to `embeddings.dimension` and queue every document for processing again.
    Reembed,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create a user (applies pending migrations first).
    CreateUser {
        #[arg(long)]
        email: String,
        /// The password (or set AVATAR_ADMIN_PASSWORD, which keeps it out of `ps`).
        #[arg(long, env = "AVATAR_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        full_name: Option<String>,
        /// Give the user the platform role saas_admin.
        #[arg(long)]
        saas_admin: bool,
    },
    /// Create the first saas_admin (auth.bootstrap_admin_email, random password) when the
    /// database has none; its credentials are written to DATA_DIR/bootstrap-admin.txt.
    Bootstrap,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back the last `steps` migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The parsing child: no settings, no runtime, no environment; just the document.
    if let Command::ParseDocument {
        format,
        chunk_size,
        chunk_overlap,
        max_chunks,
        docx_max_uncompressed_bytes,
        pdf_max_pages,
        tokenizer,
        cpu_secs,
        memory_mb,
    } = cli.command
    {
        return parse_document_command(
            ParseRequest {
                format,
                chunk_size,
                chunk_overlap,
                max_chunks,
                limits: ParseLimits {
                    docx_max_uncompressed_bytes,
                    pdf_max_pages,
                },
                unit: tokenizer.map_or(TokenUnit::Cl100k, TokenUnit::WordPieces),
            },
            ChildLimits {
                cpu_secs,
                memory_mb,
            },
        );
    }
    if let Command::Openapi = cli.command {
        return match serde_json::to_string_pretty(&avatar_platform::modules::openapi_document()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // Two rustls crypto providers are compiled in (reqwest's aws-lc-rs, sqlx's ring): pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let settings = match Settings::load(&cli.config_dir) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init_tracing(&settings.telemetry);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            bind,
            workers,
            no_migrate,
        } => {
            if let Some(bind) = bind {
                settings.server.bind = bind;
                settings.bind_addr()?;
            }
            let environment = settings.environment;
            let app = Application::build(
                settings,
                RunOptions {
                    workers,
                    migrate: !no_migrate,
                    ..RunOptions::default()
                },
            )
            .await?;
            if let Some(port) = app.port() {
                let host = app
                    .context()
                    .settings
                    .server
                    .bind
                    .rsplit_once(':')
                    .map(|(host, _)| host.to_owned())
                    .unwrap_or_default();
                tracing::info!(
                    environment = environment.as_str(),
                    "serving on http://{host}:{port} (API docs at http://{host}:{port}/docs/)"
                );
            }
            app.run_until_stopped().await
        }
        Command::Worker { workers } => {
            let app = Application::build(
                settings,
                RunOptions {
                    http: false,
                    workers,
                    migrate: false,
                    ..RunOptions::default()
                },
            )
            .await?;
            tracing::info!("job workers running; stop with Ctrl-C");
            app.run_until_stopped().await
        }
        Command::Migrate { action } => {
            let connection = db::connect(&settings.database).await.with_context(|| {
                format!("cannot connect to {}", settings.database_url_redacted())
            })?;
            match action {
                MigrateAction::Up => migration::Migrator::up(&connection, None).await?,
                MigrateAction::Down { steps } => {
                    migration::Migrator::down(&connection, Some(steps)).await?;
                }
                MigrateAction::Status => migration::Migrator::status(&connection).await?,
            }
            Ok(())
        }
        Command::Openapi | Command::ParseDocument { .. } => Ok(()),
        Command::Admin { action } => admin(action, settings).await,
        Command::Documents {
            action: DocumentsAction::Reembed,
        } => {
            let dimension = settings.embeddings.dimension;
            let app = Application::build(
                settings,
                RunOptions {
                    http: false,
                    workers: Some(0),
                    migrate: true,
                    handle_signals: false,
                    dispatch_events: false,
                    startup_checks: false,
                },
            )
            .await?;
            let queued = app
                .service::<DocumentsService>()?
                .reembed_all(dimension)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            println!(
                "chunks now have {dimension} dimensions; {queued} documents queued for processing"
            );
            app.shutdown().await;
            Ok(())
        }
    }
}

async fn admin(action: AdminAction, settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(
        settings,
        RunOptions {
            http: false,
            workers: Some(0),
            migrate: true,
            handle_signals: false,
            dispatch_events: false,
            startup_checks: true,
        },
    )
    .await?;
    let auth = app.service::<AuthService>()?;
    match action {
        AdminAction::CreateUser {
            email,
            password,
            full_name,
            saas_admin,
        } => {
            let role = if saas_admin {
                PlatformRole::SaasAdmin
            } else {
                PlatformRole::User
            };
            let email =
                Email::parse(&email).map_err(|invalid| anyhow::anyhow!("{email:?} {invalid}"))?;
            let user = auth
                .create_user(&email, &password, full_name, role, Actor::system())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            println!(
                "created {} ({}) with role {}",
                user.email,
                user.id,
                role.as_str()
            );
        }
        AdminAction::Bootstrap => {
            let data_dir = app.context().settings.data_dir.clone();
            let credentials = data_dir.join("bootstrap-admin.txt");
            if auth
                .has_saas_admin()
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?
            {
                println!("A saas_admin exists already; no bootstrap admin created.");
                if credentials.exists() {
                    println!(
                        "Bootstrap credentials from the first run: {}",
                        credentials.display()
                    );
                }
            } else {
                let configured = &app.context().settings.auth.bootstrap_admin_email;
                let email = Email::parse(configured).map_err(|invalid| {
                    anyhow::anyhow!(
                        "setting `auth.bootstrap_admin_email` {configured:?}: {invalid}"
                    )
                })?;
                let password = avatar_platform::core::crypto::random_token("");
                auth.create_user(
                    &email,
                    &password,
                    Some("Platform admin".into()),
                    PlatformRole::SaasAdmin,
                    Actor::system(),
                )
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
                std::fs::create_dir_all(&data_dir)?;
                std::fs::write(
                    &credentials,
                    format!("email: {email}\npassword: {password}\n"),
                )?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
                }
                println!(
                    "Created the bootstrap saas_admin:\n  email:    {email}\n  password: {password}\n(kept in {}); log in with POST /api/v1/auth/login",
                    credentials.display()
                );
            }
        }
    }
    app.shutdown().await;
    Ok(())
}
