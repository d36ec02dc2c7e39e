//! Group commit: many concurrent callers' single-row writes made as one multi-row statement.
//! A caller hands its item over and waits for that item's own outcome; while a write is in
//! flight, items that arrive queue up and go together in the next one. An idle system writes
//! each item at once (a batch of one), so nothing waits for a timer; under load, the cost of
//! a round trip, a statement and a commit is shared by the batch.
//!
//! Writes run in spawned tasks, not in the callers: a caller that goes away (a client that
//! hung up) neither stops the write of the others' items nor leaves them waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What a write returns: one outcome per item, in the items' order.
pub type Flush<T, R, E> =
    Arc<dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<R>, E>> + Send>> + Send + Sync>;

/// Why an item's write has no outcome of its own.
#[derive(Debug, thiserror::Error)]
pub enum CoalesceError<E> {
    /// The batch's write failed: every item of it gets the same error.
    #[error("{0}")]
    Failed(Arc<E>),
    /// The write answered a different number of outcomes than items (a bug in it).
    #[error("the batched write lost track of an item")]
    Lost,
}

struct Waiting<T, R, E> {
    item: T,
    reply: oneshot::Sender<Result<R, CoalesceError<E>>>,
}

struct State<T, R, E> {
    queue: Vec<Waiting<T, R, E>>,
    /// Writer tasks running now.
    writers: usize,
}

pub struct Coalescer<T, R, E> {
    state: Mutex<State<T, R, E>>,
    flush: Flush<T, R, E>,
    max_batch: usize,
    max_writers: usize,
}

impl<T, R, E> Coalescer<T, R, E>
where
    T: Send + 'static,
    R: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Writes with `flush`, at most `max_batch` items at a time and `max_writers` writes at
    /// once (several, so that one slow write does not hold every caller).
    pub fn new(flush: Flush<T, R, E>, max_batch: usize, max_writers: usize) -> Arc<Self> {
        Arc::new(Coalescer {
            state: Mutex::new(State {
                queue: Vec::new(),
                writers: 0,
            }),
            flush,
            max_batch: max_batch.max(1),
            max_writers: max_writers.max(1),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T, R, E>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `item` (with whatever else is waiting) and returns its outcome.
    pub async fn write(self: &Arc<Self>, item: T) -> Result<R, CoalesceError<E>> {
        let (reply, outcome) = oneshot::channel();
        let start_writer = {
            let mut state = self.state();
            state.queue.push(Waiting { item, reply });
            let start = state.writers < self.max_writers;
            if start {
                state.writers += 1;
            }
            start
        };
        if start_writer {
            tokio::spawn(Arc::clone(self).drain());
        }
        outcome.await.unwrap_or(Err(CoalesceError::Lost))
    }

    /// A writer: writes batches until the queue is empty, then ends.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch: Vec<Waiting<T, R, E>> = {
                let mut state = self.state();
                if state.queue.is_empty() {
                    state.writers -= 1;
                    return;
                }
                let take = state.queue.len().min(self.max_batch);
                state.queue.drain(..take).collect()
            };
            let (items, replies): (Vec<T>, Vec<_>) = batch
                .into_iter()
                .map(|waiting| (waiting.item, waiting.reply))
                .unzip();
            let count = items.len();
            match (self.flush)(items).await {
                Ok(outcomes) if outcomes.len() == count => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(_) => {
                    for reply in replies {
                        let _ = reply.send(Err(CoalesceError::Lost));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for reply in replies {
                        let _ = reply.send(Err(CoalesceError::Failed(error.clone())));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{CoalesceError, Coalescer, Flush};

    /// A write that takes 20 ms, doubles each item, records its batch sizes and refuses any
    /// batch holding 13.
    fn doubling(sizes: Arc<std::sync::Mutex<Vec<usize>>>) -> Flush<u32, u32, String> {
        Arc::new(move |items: Vec<u32>| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                if items.contains(&13) {
                    return Err("thirteen".to_owned());
                }
                Ok(items.into_iter().map(|item| item * 2).collect())
            })
        })
    }

    #[tokio::test]
    async fn concurrent_items_share_writes_and_each_gets_its_own_outcome() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let coalescer = Coalescer::new(doubling(sizes.clone()), 16, 1);
        let done = Arc::new(AtomicUsize::new(0));
        let mut callers = Vec::new();
        for item in 20..60_u32 {
            let (coalescer, done) = (coalescer.clone(), done.clone());
            callers.push(tokio::spawn(async move {
                let outcome = coalescer.write(item).await;
                done.fetch_add(1, Ordering::Relaxed);
                (item, outcome)
            }));
        }
        for caller in callers {
            let (item, outcome) = caller.await.unwrap();
            assert_eq!(outcome.unwrap(), item * 2);
        }
        assert_eq!(done.load(Ordering::Relaxed), 40);
        let batches = sizes.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 40);
        assert!(batches.iter().all(|size| *size <= 16), "{batches:?}");
        assert!(batches.len() < 40, "writes were shared: {batches:?}");
        // Idle again: the next item is written alone, at once.
        assert_eq!(coalescer.write(5).await.unwrap(), 10);
        assert_eq!(sizes.lock().unwrap().last(), Some(&1));
    }

    #[tokio::test]
    async fn a_failed_write_fails_its_own_batch_only() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let coalescer = Coalescer::new(doubling(sizes), 4, 2);
        match coalescer.write(13).await {
            Err(CoalesceError::Failed(error)) => assert_eq!(*error, "thirteen"),
            other => panic!("{other:?}"),
        }
        assert_eq!(coalescer.write(3).await.unwrap(), 6);
    }
}
