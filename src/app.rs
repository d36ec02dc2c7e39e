//! Wiring: settings -> database -> bus -> jobs -> modules (each installs itself into the
//! [`Registry`]) -> HTTP server.
//!
//! [`Application::build`] binds the listener (port 0 in tests) and starts nothing it cannot
//! stop: the binary and the integration tests start the very same application.

mod registry;

pub use registry::{Module, Registry, Routes, StartupCheck, startup_check};

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, web};
use anyhow::Context;
use async_trait::async_trait;
use sea_orm_migration::MigratorTrait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa_swagger_ui::SwaggerUi;

use crate::core::auth::{ApiKeys, AuthProviders, ProjectRoles, TokenVerifier};
use crate::core::cache::{Cache, ExactCaches, build_cache};
use crate::core::clock::{Clock, SystemClock};
use crate::core::config::Settings;
use crate::core::crypto::SecretBox;
use crate::core::db::{self, Db};
use crate::core::error::{AppError, ErrorCode};
use crate::core::events::EventBus;
use crate::core::extract::configure_extractors;
use crate::core::health::{self, Readiness};
use crate::core::jobs::{JobContext, JobQueue, SweepStep, SweepSteps, Sweeper, WorkerPool};
use crate::core::openapi::RouteTable;
use crate::core::outbound::OutboundClients;
use crate::core::storage::{BlobStore, build_blob_store};
use crate::core::telemetry::{metrics_handle, observe_request};
use crate::modules::events::DomainEvent;

/// What `serve`, `worker` and the tests choose to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Serve HTTP (false for `worker`).
    pub http: bool,
    /// Job workers in this process; `None` = `jobs.workers` from settings.
    pub workers: Option<usize>,
    /// Apply pending migrations first.
    pub migrate: bool,
    /// Stop on SIGINT/SIGTERM (the binary); tests stop the app themselves.
    pub handle_signals: bool,
    /// Run the event dispatcher in this process.
    pub dispatch_events: bool,
    /// Run the modules' start-up checks, such as "stored chunks have the dimension of
    /// `embeddings.dimension`" (off only for `documents reembed`, which fixes that).
    pub startup_checks: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            http: true,
            workers: None,
            migrate: true,
            handle_signals: true,
            dispatch_events: true,
            startup_checks: true,
        }
    }
}

/// The shared pieces every module is built from.
#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub bus: EventBus<DomainEvent>,
    pub jobs: JobQueue,
    pub cache: Arc<dyn Cache>,
    /// In-process caches every process drops when what they hold changes (sessions, roles).
    pub exact_caches: ExactCaches,
    pub blobs: Arc<dyn BlobStore>,
    /// The HTTP clients for every request the platform sends out (outbound policy).
    pub outbound: Arc<OutboundClients>,
    /// Encryption at rest for secrets (keys, tokens) the modules store.
    pub secret_box: SecretBox,
    /// The time the platform goes by (a manual one in tests).
    pub clock: Arc<dyn Clock>,
}

impl AppContext {
    /// Connects to every dependency named in `settings`, on the system's clock.
    pub async fn connect(settings: Settings) -> anyhow::Result<AppContext> {
        Self::connect_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`AppContext::connect`], going by `clock` (a manual one in tests that move time).
    pub async fn connect_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<AppContext> {
        let connection = db::connect(&settings.database).await.with_context(|| {
            format!(
                "cannot connect to the database at {}",
                settings.database_url_redacted()
            )
        })?;
        let db = Db::new(connection);
        let bus = EventBus::new(db.clone(), settings.events.clone(), clock.clone());
        let jobs = JobQueue::connect(
            db.clone(),
            clock.clone(),
            &settings.database,
            &settings.jobs,
        )
        .await
        .map_err(|error| anyhow::anyhow!("cannot start the job queue: {}", error.description))?;
        let cache = build_cache(&settings.cache)
            .await
            .context("cannot connect to the cache")?;
        let exact_caches = match settings.cache.exact_lease_ms {
            0 => ExactCaches::disabled(),
            lease => ExactCaches::start(
                db.connection().get_postgres_connection_pool().clone(),
                Duration::from_millis(lease),
            ),
        };
        let blobs = build_blob_store(&settings.storage, &settings.data_dir)
            .await
            .context("cannot open the blob store")?;
        let outbound = OutboundClients::new(&settings.outbound)?;
        let secret_box = SecretBox::new(
            &settings.secrets.encryption_key,
            &settings.secrets.previous_encryption_keys,
        )?;
        Ok(AppContext {
            settings: Arc::new(settings),
            db,
            bus,
            jobs,
            cache,
            exact_caches,
            blobs,
            outbound,
            secret_box,
            clock,
        })
    }

    /// The context handed to every job: the pool plus the services tasks look up by type.
    pub fn job_context(&self) -> JobContext {
        let sweep_steps = SweepSteps(vec![
            Arc::new(EventRelay(self.bus.clone())) as Arc<dyn SweepStep>
        ]);
        JobContext::new(
            self.db.clone(),
            self.settings.jobs.clone(),
            self.clock.clone(),
        )
        .with(Arc::new(sweep_steps))
        .with(Arc::new(self.bus.clone()))
    }
}

/// The sweeper's step that re-delivers events a crashed process left behind.
struct EventRelay(EventBus<DomainEvent>);

#[async_trait]
impl SweepStep for EventRelay {
    fn name(&self) -> &'static str {
        "event-relay"
    }

    async fn sweep(&self) -> anyhow::Result<()> {
        self.0.sweep().await?;
        Ok(())
    }
}

/// A running platform: HTTP server (optional), job workers, event dispatcher.
pub struct Application {
    context: AppContext,
    registry: Arc<Registry>,
    port: Option<u16>,
    server: Option<Server>,
    workers: Option<WorkerPool>,
    dispatcher: Option<JoinHandle<()>>,
    /// The modules' background loops (with the workers).
    background: Vec<JoinHandle<()>>,
    stop_dispatcher: watch::Sender<bool>,
    /// SIGINT/SIGTERM stop this application (the binary; tests stop it themselves).
    handle_signals: bool,
}

impl Application {
    pub async fn build(settings: Settings, options: RunOptions) -> anyhow::Result<Application> {
        let context = AppContext::connect(settings).await?;
        Self::build_with(context, options).await
    }

    /// Builds on an existing context (tests prepare theirs).
    pub async fn build_with(
        context: AppContext,
        options: RunOptions,
    ) -> anyhow::Result<Application> {
        let settings = context.settings.clone();
        let registry = Arc::new(Registry::install(&context, crate::modules::ALL)?);
        for subscriber in registry.subscribers() {
            context.bus.subscribe(subscriber.clone());
        }
        if options.migrate {
            migrate_up(&context.db).await?;
        }
        if options.startup_checks {
            registry.run_startup_checks().await?;
        }
        let worker_count = options.workers.unwrap_or(settings.jobs.workers);
        let workers = if worker_count > 0 {
            context
                .jobs
                .ensure_scheduled(&Sweeper {
                    cron: settings.jobs.sweeper_cron.clone(),
                })
                .await
                .context("scheduling the sweeper failed")?;
            for task in registry.periodic_tasks() {
                context
                    .jobs
                    .ensure_scheduled(task.as_ref())
                    .await
                    .context("scheduling a periodic task failed")?;
            }
            Some(WorkerPool::start(
                context.jobs.clone(),
                registry.job_context(context.job_context()),
                worker_count,
            ))
        } else {
            None
        };

        let (stop_dispatcher, stop_receiver) = watch::channel(false);
        // The modules' loops run where jobs run, and stop with the dispatcher.
        let background = if worker_count > 0 {
            registry
                .background_loops()
                .iter()
                .map(|(name, run)| {
                    tracing::debug!(name, "starting a background loop");
                    tokio::spawn(run(stop_receiver.clone()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let dispatcher = options
            .dispatch_events
            .then(|| tokio::spawn(context.bus.clone().run_dispatcher(stop_receiver)));

        let (server, port) = if options.http {
            let listener = TcpListener::bind(settings.bind_addr()?)
                .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
            let port = listener.local_addr()?.port();
            {
                let server = http_server(&context, &registry, listener, options.handle_signals)?;
                (Some(server), Some(port))
            }
        } else {
            (None, None)
        };

        Ok(Application {
            context,
            registry,
            port,
            server,
            workers,
            dispatcher,
            background,
            stop_dispatcher,
            handle_signals: options.handle_signals,
        })
    }

    /// The bound port (for `--bind 127.0.0.1:0` and tests).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn context(&self) -> &AppContext {
        &self.context
    }

    /// What the modules installed.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A module's service (for the CLI's commands and the tests).
    pub fn service<T: Send + Sync + 'static>(&self) -> anyhow::Result<Arc<T>> {
        self.registry.get::<T>()
    }

    /// A handle to stop the HTTP server gracefully (in-flight requests finish).
    pub fn server_handle(&self) -> Option<ServerHandle> {
        self.server.as_ref().map(Server::handle)
    }

    /// Runs until the server stops (signal or handle), or until a signal when there is no
    /// server; then lets in-flight jobs finish and stops the dispatcher.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) if self.handle_signals => {
                // A signal stops the server (actix drains in-flight requests) and, at the same
                // time, the workers: a long job stops and requeues its work right away instead
                // of learning about the shutdown only after the drain.
                let mut server = std::pin::pin!(server);
                tokio::select! {
                    result = &mut server => result.context("HTTP server failed")?,
                    () = wait_for_signal() => {
                        let grace =
                            Duration::from_secs(self.context.settings.server.shutdown_timeout_secs);
                        let workers = self.workers.take();
                        let stop_workers = async move {
                            if let Some(workers) = workers {
                                workers.shutdown(grace).await;
                            }
                        };
                        let (result, ()) = tokio::join!(&mut server, stop_workers);
                        result.context("HTTP server failed")?;
                    }
                }
            }
            Some(server) => server.await.context("HTTP server failed")?,
            None => wait_for_signal().await,
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stops workers (waiting for running jobs) and the dispatcher.
    pub async fn shutdown(mut self) {
        let grace = Duration::from_secs(self.context.settings.server.shutdown_timeout_secs);
        if let Some(workers) = self.workers.take() {
            workers.shutdown(grace).await;
        }
        let _ = self.stop_dispatcher.send(true);
        if let Some(dispatcher) = self.dispatcher.take() {
            let _ = tokio::time::timeout(grace, dispatcher).await;
        }
        for task in self.background.drain(..) {
            let _ = tokio::time::timeout(grace, task).await;
        }
        tracing::info!("stopped");
    }
}

/// Applies pending migrations, one process at a time (replicas may start together).
async fn migrate_up(db: &Db) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let transaction = db.connection().begin().await?;
    transaction
        .execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('avatar-platform:migrations'))")
        .await?;
    migration::Migrator::up(&transaction, None)
        .await
        .context("applying migrations failed")?;
    transaction.commit().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn http_server(
    context: &AppContext,
    registry: &Arc<Registry>,
    listener: TcpListener,
    handle_signals: bool,
) -> anyhow::Result<Server> {
    let settings = context.settings.clone();
    let readiness = web::Data::new(Readiness {
        db: context.db.clone(),
        cache: context.cache.clone(),
        blobs: context.blobs.clone(),
        check_timeout: Duration::from_millis(settings.server.readiness_timeout_ms),
    });
    let auth_providers = web::Data::new(AuthProviders {
        tokens: registry.get::<dyn TokenVerifier>()?,
        projects: registry.get::<dyn ProjectRoles>()?,
        api_keys: registry.get::<dyn ApiKeys>()?,
        trust_forwarded_for: settings.server.trust_forwarded_for,
    });
    let registry = registry.clone();
    metrics_handle();
    let document = crate::modules::openapi_document();
    let routes = web::Data::new(RouteTable::from_document(&document));
    let app_settings = settings.clone();
    let mut server = HttpServer::new(move || {
        let settings = app_settings.clone();
        App::new()
            .configure(|cfg| configure_extractors(cfg, settings.server.json_body_limit_bytes))
            // Buffered bodies (JSON) stop at the JSON limit; uploads stream (`web::Payload`)
            // and enforce their own limit.
            .app_data(web::PayloadConfig::new(
                settings.server.json_body_limit_bytes,
            ))
            .app_data(readiness.clone())
            .app_data(auth_providers.clone())
            .app_data(routes.clone())
            .configure(|cfg| health::configure(cfg, settings.server.metrics_enabled))
            .configure(|cfg| registry.configure(cfg))
            .service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document.clone()))
            .default_service(web::to(unknown_route))
            .wrap(cors(&settings.server.cors_allowed_origins))
            .wrap(from_fn(observe_request))
    })
    // Streamed answers are many small writes: with Nagle's algorithm on, a frame written while
    // the previous one is unacknowledged waits for the client's delayed ACK (up to 40 ms).
    .tcp_nodelay(true)
    .listen(listener)?
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.http_workers > 0 {
        server = server.workers(settings.server.http_workers);
    }
    if !handle_signals {
        server = server.disable_signals();
    }
    Ok(server.run())
}

fn cors(origins: &[String]) -> Cors {
    let cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers(["x-request-id", "retry-after"])
        .max_age(3600);
    if origins.iter().any(|origin| origin == "*") {
        return cors.allow_any_origin();
    }
    origins
        .iter()
        .fold(cors, |cors, origin| cors.allowed_origin(origin))
}

/// No route took the request: 405 with `Allow` when the path exists with other methods,
/// else 404.
async fn unknown_route(
    req: HttpRequest,
    routes: web::Data<RouteTable>,
) -> Result<actix_web::HttpResponse, AppError> {
    if let Some(allowed) = routes.allowed_methods(req.path()) {
        return Err(AppError::method_not_allowed(
            req.method().as_str(),
            &allowed,
        ));
    }
    Err(AppError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
