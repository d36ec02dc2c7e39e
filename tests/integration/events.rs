//! The durable event bus against real PostgreSQL: outbox, dispatcher, sweeper, retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use avatar_platform::core::clock::SystemClock;
use avatar_platform::core::config::EventSettings;
use avatar_platform::core::db::Db;
use avatar_platform::core::events::{Delivery, Event, EventBus, EventHandler};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};

use crate::helpers::{TestDatabase, eventually};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum TestEvent {
    Happened { n: u32 },
    Ignored,
}

impl Event for TestEvent {
    fn event_type(&self) -> &'static str {
        match self {
            TestEvent::Happened { .. } => "test.happened",
            TestEvent::Ignored => "test.ignored",
        }
    }
}

/// Records what it received; fails its first `failures` deliveries.
struct Recorder {
    name: &'static str,
    failures: u32,
    attempts: Mutex<u32>,
    received: Mutex<Vec<(TestEvent, i32)>>,
}

impl Recorder {
    fn new(name: &'static str, failures: u32) -> Arc<Self> {
        Arc::new(Recorder {
            name,
            failures,
            attempts: Mutex::new(0),
            received: Mutex::new(Vec::new()),
        })
    }

    fn received(&self) -> Vec<(TestEvent, i32)> {
        self.received.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventHandler<TestEvent> for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn interested(&self, event: &TestEvent) -> bool {
        matches!(event, TestEvent::Happened { .. })
    }

    async fn handle(&self, event: &TestEvent, delivery: &Delivery) -> anyhow::Result<()> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            *attempts += 1;
            *attempts
        };
        if attempt <= self.failures {
            anyhow::bail!("{} refuses attempt {attempt}", self.name);
        }
        self.received
            .lock()
            .unwrap()
            .push((event.clone(), delivery.attempt));
        Ok(())
    }
}

fn settings() -> EventSettings {
    EventSettings {
        batch_size: 50,
        poll_interval_ms: 50,
        retry_base_ms: 10,
        retry_max_ms: 50,
        max_attempts: 5,
        lease_secs: 30,
        retention_days: 7,
    }
}

async fn delivery_states(db: &Db) -> HashMap<String, (String, i32)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT subscriber, status, attempts FROM event_deliveries",
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            (
                row.try_get::<String>("", "subscriber").unwrap(),
                (
                    row.try_get::<String>("", "status").unwrap(),
                    row.try_get::<i32>("", "attempts").unwrap(),
                ),
            )
        })
        .collect()
}

async fn outbox_count(db: &Db) -> i64 {
    db.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*) AS n FROM event_outbox",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

#[tokio::test]
async fn an_event_published_in_a_rolled_back_transaction_is_never_delivered() {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    let bus = EventBus::new(db.clone(), settings(), Arc::new(SystemClock));
    let recorder = Recorder::new("recorder", 0);
    bus.subscribe(recorder.clone());

    let mut uow = db.begin().await.unwrap();
    bus.publish(&mut uow, &TestEvent::Happened { n: 1 })
        .await
        .unwrap();
    uow.rollback().await.unwrap();

    let mut dropped = db.begin().await.unwrap();
    bus.publish(&mut dropped, &TestEvent::Happened { n: 2 })
        .await
        .unwrap();
    drop(dropped); // never committed

    let report = bus.sweep().await.unwrap();
    assert_eq!(report.claimed(), 0);
    assert!(recorder.received().is_empty());
    assert_eq!(outbox_count(&db).await, 0);
}

#[tokio::test]
async fn a_committed_event_reaches_every_subscriber_through_the_sweeper_when_dispatch_never_ran() {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    let bus = EventBus::new(db.clone(), settings(), Arc::new(SystemClock));
    let first = Recorder::new("first", 0);
    let second = Recorder::new("second", 0);
    bus.subscribe(first.clone());
    bus.subscribe(second.clone());

    // Commit, then "crash": no dispatcher runs in this process.
    let mut uow = db.begin().await.unwrap();
    bus.publish(&mut uow, &TestEvent::Happened { n: 7 })
        .await
        .unwrap();
    bus.publish(&mut uow, &TestEvent::Ignored).await.unwrap();
    uow.commit().await.unwrap();
    // No dispatcher runs here and nothing was dispatched after the commit: nobody has them.
    assert!(first.received().is_empty() && second.received().is_empty());

    // A fresh bus over the same database (the restarted process) runs the sweeper.
    let restarted = EventBus::new(db.clone(), settings(), Arc::new(SystemClock));
    restarted.subscribe(first.clone());
    restarted.subscribe(second.clone());
    let report = restarted.sweep().await.unwrap();
    assert_eq!(report.delivered, 2);
    assert_eq!(first.received(), vec![(TestEvent::Happened { n: 7 }, 1)]);
    assert_eq!(second.received(), vec![(TestEvent::Happened { n: 7 }, 1)]);
    // Nobody subscribed to `Ignored`: it has no delivery rows.
    let states = delivery_states(&db).await;
    assert_eq!(states.len(), 2);
    assert!(states.values().all(|(status, _)| status == "delivered"));

    // Delivered means acknowledged: another sweep delivers nothing twice.
    assert_eq!(restarted.sweep().await.unwrap().claimed(), 0);
    assert_eq!(first.received().len(), 1);
}

#[tokio::test]
async fn a_failing_subscriber_is_retried_with_backoff_and_does_not_block_another() {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    let bus = EventBus::new(db.clone(), settings(), Arc::new(SystemClock));
    let flaky = Recorder::new("flaky", 2);
    let steady = Recorder::new("steady", 0);
    bus.subscribe(flaky.clone());
    bus.subscribe(steady.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(bus.clone().run_dispatcher(stopped));

    let mut uow = db.begin().await.unwrap();
    bus.publish(&mut uow, &TestEvent::Happened { n: 3 })
        .await
        .unwrap();
    uow.commit().await.unwrap();

    // The steady subscriber gets it at once, while the flaky one is still failing.
    wait_until(Duration::from_secs(5), || !steady.received().is_empty()).await;
    assert_eq!(steady.received(), vec![(TestEvent::Happened { n: 3 }, 1)]);

    // The flaky one gets it on its third attempt, after two backoffs.
    wait_until(Duration::from_secs(5), || !flaky.received().is_empty()).await;
    assert_eq!(flaky.received(), vec![(TestEvent::Happened { n: 3 }, 3)]);
    // The acknowledgement is written right after the handler returns.
    let states = eventually(
        Duration::from_secs(5),
        "flaky's delivery is acknowledged",
        || async {
            let states = delivery_states(&db).await;
            if states["flaky"].0 == "delivered" {
                Ok(states)
            } else {
                Err(states)
            }
        },
    )
    .await;
    assert_eq!(states["flaky"], ("delivered".to_owned(), 3));
    assert_eq!(states["steady"], ("delivered".to_owned(), 1));

    stop.send(true).unwrap();
    dispatcher.await.unwrap();
}

#[tokio::test]
async fn a_subscriber_that_always_fails_ends_visible_as_failed() {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    let bus = EventBus::new(db.clone(), settings(), Arc::new(SystemClock));
    let broken = Recorder::new("broken", u32::MAX);
    bus.subscribe(broken.clone());

    let mut uow = db.begin().await.unwrap();
    bus.publish(&mut uow, &TestEvent::Happened { n: 9 })
        .await
        .unwrap();
    uow.commit().await.unwrap();

    for _ in 0..20 {
        bus.sweep().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let states = delivery_states(&db).await;
    assert_eq!(
        states["broken"],
        ("failed".to_owned(), settings().max_attempts)
    );
    let last_error = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT last_error FROM event_deliveries",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "last_error")
        .unwrap();
    assert!(
        last_error.contains("broken refuses attempt 5"),
        "{last_error}"
    );
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) {
    eventually(limit, "the condition holds", || async {
        if done() { Ok(()) } else { Err(()) }
    })
    .await;
}
