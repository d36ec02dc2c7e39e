//! Platform benchmarks against a real PostgreSQL (`DATABASE_URL`): HTTP overhead of the
//! middleware stack, event bus throughput, job throughput. `make bench` runs it; figures go
//! to docs/benchmarks.md. Every loop is bounded; all traffic stays on 127.0.0.1.

// Helpers outside `#[test]` functions: a panic there is a failed test, as in the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use avatar_platform::core::clock::SystemClock;
use avatar_platform::core::config::Settings;
use avatar_platform::core::db::Db;
use avatar_platform::core::events::{Delivery, Event, EventBus, EventHandler};
use avatar_platform::core::jobs::{JobContext, JobQueue, WorkerPool, task_error};
use fang::asynk::async_queue::AsyncQueueable;
use fang::{AsyncRunnable, FangError};
use serde::{Deserialize, Serialize};

const HTTP_REQUESTS: usize = 20_000;
const HTTP_CONCURRENCY: usize = 32;
const EVENTS: usize = 5_000;
const TASKS: usize = 2_000;
const JOB_WORKERS: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::with_bench_database("bench_platform", |url| async move { run(&url).await }).await
}

async fn run(url: &str) -> anyhow::Result<()> {
    let app = common::start_app(url, &[]).await?;
    let (db, settings) = (app.db.clone(), app.settings.clone());

    println!("== HTTP: GET /health through the whole middleware stack");
    http_bench(&format!("{}/health", app.base)).await?;

    println!("== Events: publish+commit one event per unit of work, until every delivery is done");
    events_bench(&db, &settings).await?;

    println!("== Jobs: {TASKS} no-op tasks, {JOB_WORKERS} workers");
    jobs_bench(&db, &settings).await?;

    app.stop().await;
    Ok(())
}

async fn http_bench(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..HTTP_CONCURRENCY {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < HTTP_REQUESTS {
                let sent = Instant::now();
                let response = client.get(&url).send().await?;
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, reqwest::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{} requests, {HTTP_CONCURRENCY} concurrent: {:.0} req/s, p50 {:?}, p99 {:?}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        common::percentile(&latencies, 0.50),
        common::percentile(&latencies, 0.99)
    );
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct BenchEvent(u32);

impl Event for BenchEvent {
    fn event_type(&self) -> &'static str {
        "bench"
    }
}

struct Counter(AtomicUsize);

#[async_trait]
impl EventHandler<BenchEvent> for Counter {
    fn name(&self) -> &'static str {
        "bench.counter"
    }
    fn interested(&self, _: &BenchEvent) -> bool {
        true
    }
    async fn handle(&self, _: &BenchEvent, _: &Delivery) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn events_bench(db: &Db, settings: &Settings) -> anyhow::Result<()> {
    let bus = EventBus::new(db.clone(), settings.events.clone(), Arc::new(SystemClock));
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    bus.subscribe(counter.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(bus.clone().run_dispatcher(stopped));
    let started = Instant::now();
    for n in 0..EVENTS {
        let mut uow = db.begin().await?;
        bus.publish(&mut uow, &BenchEvent(n as u32)).await?;
        uow.commit().await?;
    }
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.0.load(Ordering::Relaxed) < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = started.elapsed();
    println!(
        "{EVENTS} events: published (sequential transactions) {:.0}/s; all {} delivered after {:.2} s ({:.0}/s end to end)",
        EVENTS as f64 / published.as_secs_f64(),
        counter.0.load(Ordering::Relaxed),
        delivered.as_secs_f64(),
        EVENTS as f64 / delivered.as_secs_f64()
    );
    let _ = stop.send(true);
    let _ = dispatcher.await;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Noop;

static RAN: AtomicUsize = AtomicUsize::new(0);

#[typetag::serde(name = "bench.noop")]
#[async_trait]
impl AsyncRunnable for Noop {
    async fn run(&self, _queue: &dyn AsyncQueueable) -> Result<(), FangError> {
        JobContext::current().map_err(|error| task_error(error.description))?;
        RAN.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn jobs_bench(db: &Db, settings: &Settings) -> anyhow::Result<()> {
    let queue = JobQueue::connect(
        db.clone(),
        Arc::new(SystemClock),
        &settings.database,
        &settings.jobs,
    )
    .await
    .map_err(|error| anyhow::anyhow!(error.description))?;
    let started = Instant::now();
    for _ in 0..TASKS {
        queue.enqueue(&Noop).await?;
    }
    let enqueued = started.elapsed();
    let mut job_settings = settings.jobs.clone();
    job_settings.poll_interval_ms = 10;
    let pool = WorkerPool::start(
        queue,
        JobContext::new(db.clone(), job_settings, Arc::new(SystemClock)),
        JOB_WORKERS,
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    while RAN.load(Ordering::Relaxed) < TASKS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ran = started.elapsed();
    pool.shutdown(Duration::from_secs(10)).await;
    println!(
        "enqueue {:.0} tasks/s; run {} tasks in {:.2} s = {:.0} tasks/s (claim + run + delete)",
        TASKS as f64 / enqueued.as_secs_f64(),
        RAN.load(Ordering::Relaxed),
        ran.as_secs_f64(),
        TASKS as f64 / ran.as_secs_f64()
    );
    Ok(())
}
