//! What the modules install into: their services, routes, event subscribers, task types,
//! periodic tasks and start-up checks. Each module's façade has one `install` function that
//! fills a [`Registry`]; the application reads it back to start the HTTP server, the bus and
//! the workers. Nothing here names a module.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use fang::AsyncRunnable;

use crate::app::AppContext;
use crate::core::events::EventHandler;
use crate::core::jobs::JobContext;
use crate::modules::events::DomainEvent;

/// A module as `modules/mod.rs` lists it.
pub struct Module {
    /// The folder's name, for messages.
    pub name: &'static str,
    /// Builds the module's service and registers everything it owns.
    pub install: fn(&AppContext, &mut Registry) -> anyhow::Result<()>,
    /// The module's part of the OpenAPI document (needs no running app: `avatar-platform
    /// openapi` prints it).
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

/// Mounts a module's routes under `/api/v1`.
pub type Routes = fn(&mut web::ServiceConfig);

/// A check that runs once the database is migrated, before anything is served; a failure
/// stops start-up with its message.
pub type StartupCheck =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

type AppData = Box<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A long-running loop of a module (Telegram's pollers), started with the job workers and
/// stopped with them: it ends soon after the receiver turns true.
pub type Background = Box<
    dyn Fn(tokio::sync::watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Everything the installed modules provide.
#[derive(Default)]
pub struct Registry {
    services: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    app_data: Vec<AppData>,
    routes: Vec<Routes>,
    subscribers: Vec<Arc<dyn EventHandler<DomainEvent>>>,
    job_data: Vec<Box<dyn Fn(JobContext) -> JobContext + Send + Sync>>,
    job_timeouts: Vec<(&'static str, Duration)>,
    periodic: Vec<Box<dyn AsyncRunnable>>,
    startup_checks: Vec<(&'static str, StartupCheck)>,
    background: Vec<(&'static str, Background)>,
}

impl Registry {
    /// Installs `modules` in order: a module finds the services of those before it.
    pub fn install(context: &AppContext, modules: &[Module]) -> anyhow::Result<Registry> {
        let mut registry = Registry::default();
        for module in modules {
            (module.install)(context, &mut registry)
                .map_err(|error| error.context(format!("module `{}`", module.name)))?;
        }
        Ok(registry)
    }

    /// Makes a module's service available to the modules installed after it, to the HTTP
    /// handlers (`web::Data<T>`) and to the application.
    pub fn provide<T: Send + Sync + 'static>(&mut self, service: Arc<T>) {
        let data = web::Data::from(service.clone());
        self.app_data.push(Box::new(move |config| {
            config.app_data(data.clone());
        }));
        self.provide_shared(service);
    }

    /// Makes a value (often a trait object, such as an authentication lookup) available to
    /// the modules installed later and to the application, without an HTTP handler seeing it.
    pub fn provide_shared<T: ?Sized + Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.services
            .insert(TypeId::of::<Arc<T>>(), Box::new(value));
    }

    /// A service an earlier module provided.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> anyhow::Result<Arc<T>> {
        self.services
            .get(&TypeId::of::<Arc<T>>())
            .and_then(|value| value.downcast_ref::<Arc<T>>())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is not installed: install the module that provides it earlier",
                    type_name::<T>()
                )
            })
    }

    /// The module's routes, mounted under `/api/v1`.
    pub fn routes(&mut self, routes: Routes) {
        self.routes.push(routes);
    }

    /// An event subscriber: called for every event it is interested in, at least once.
    pub fn subscribe(&mut self, handler: Arc<dyn EventHandler<DomainEvent>>) {
        self.subscribers.push(handler);
    }

    /// A value the module's tasks look up with [`JobContext::get`].
    pub fn job_data<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.job_data
            .push(Box::new(move |context| context.with(value.clone())));
    }

    /// How long one run of the task type `task` may take, when it is not `jobs.task_timeout_secs`.
    pub fn job_timeout(&mut self, task: &'static str, timeout: Duration) {
        self.job_timeouts.push((task, timeout));
    }

    /// A periodic task (its cron schedule is part of the task), scheduled when workers run.
    pub fn periodic(&mut self, task: Box<dyn AsyncRunnable>) {
        self.periodic.push(task);
    }

    /// A check run at start-up, after migrations (see [`StartupCheck`]).
    pub fn startup_check(&mut self, name: &'static str, check: StartupCheck) {
        self.startup_checks.push((name, check));
    }

    /// A loop run in every process that runs job workers.
    pub fn background(&mut self, name: &'static str, run: Background) {
        self.background.push((name, run));
    }

    pub(crate) fn background_loops(&self) -> &[(&'static str, Background)] {
        &self.background
    }

    /// Registers the services and routes with one actix `App` (called per HTTP worker).
    pub fn configure(&self, config: &mut web::ServiceConfig) {
        for data in &self.app_data {
            data(config);
        }
        let mut scope = web::scope("/api/v1");
        for routes in &self.routes {
            scope = scope.configure(routes);
        }
        config.service(scope);
    }

    pub(crate) fn subscribers(&self) -> &[Arc<dyn EventHandler<DomainEvent>>] {
        &self.subscribers
    }

    /// The job context with everything the modules' tasks look up.
    pub(crate) fn job_context(&self, mut context: JobContext) -> JobContext {
        for add in &self.job_data {
            context = add(context);
        }
        for (task, timeout) in &self.job_timeouts {
            context = context.with_timeout(task, *timeout);
        }
        context
    }

    pub(crate) fn periodic_tasks(&self) -> &[Box<dyn AsyncRunnable>] {
        &self.periodic
    }

    pub(crate) async fn run_startup_checks(&self) -> anyhow::Result<()> {
        for (name, check) in &self.startup_checks {
            check()
                .await
                .map_err(|error| error.context(format!("start-up check `{name}`")))?;
        }
        Ok(())
    }
}

/// Boxes an async closure as a [`StartupCheck`].
pub fn startup_check<F, Fut>(check: F) -> StartupCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Box::new(move || Box::pin(check()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Registry;

    struct Earlier(u32);

    trait Lookup: Send + Sync {
        fn answer(&self) -> u32;
    }

    impl Lookup for Earlier {
        fn answer(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn a_module_finds_what_an_earlier_one_provided_by_type() {
        let mut registry = Registry::default();
        let service = Arc::new(Earlier(42));
        registry.provide_shared::<dyn Lookup>(service.clone());
        registry.provide(service);
        assert_eq!(registry.get::<Earlier>().unwrap().0, 42);
        assert_eq!(registry.get::<dyn Lookup>().unwrap().answer(), 42);
    }

    #[test]
    fn a_service_not_installed_yet_is_named_in_the_error() {
        let registry = Registry::default();
        let error = registry.get::<Earlier>().err().unwrap().to_string();
        assert!(error.contains("Earlier is not installed"), "{error}");
    }
}
