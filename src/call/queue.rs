//! A bounded audio queue that never blocks its producer: when full, the oldest item is dropped
//! and counted (a late frame is worth less than a fresh one in a live call).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

struct Shared<T> {
    items: Mutex<Inner<T>>,
    notify: Notify,
    dropped: Counter,
}

struct Inner<T> {
    queue: VecDeque<T>,
    capacity: usize,
    closed: bool,
}

/// Producer side. Dropping every producer closes the queue.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
}

/// Consumer side.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` items; `dropped` counts what was pushed out.
pub fn bounded<T>(capacity: usize, dropped: Counter) -> (Producer<T>, Consumer<T>) {
    assert!(capacity > 0);
    let shared = Arc::new(Shared {
        items: Mutex::new(Inner { queue: VecDeque::with_capacity(capacity), capacity, closed: false }),
        notify: Notify::new(),
        dropped,
    });
    (Producer { shared: shared.clone() }, Consumer { shared })
}

impl<T> Producer<T> {
    /// Enqueues, dropping the oldest item when full. Returns false when the consumer is gone.
    pub fn push(&self, item: T) -> bool {
        {
            let mut inner = self.shared.items.lock().unwrap_or_else(|e| e.into_inner());
            if inner.closed {
                return false;
            }
            if inner.queue.len() == inner.capacity {
                inner.queue.pop_front();
                self.shared.dropped.inc();
            }
            inner.queue.push_back(item);
        }
        self.shared.notify.notify_one();
        true
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.items.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.notify.notify_one();
    }
}

impl<T> Consumer<T> {
    /// The next item; `None` once the producer is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut inner = self.shared.items.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(item) = inner.queue.pop_front() {
                    return Some(item);
                }
                if inner.closed {
                    return None;
                }
            }
            self.shared.notify.notified().await;
        }
    }

    /// Items waiting right now.
    pub fn len(&self) -> usize {
        self.shared.items.lock().unwrap_or_else(|e| e.into_inner()).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        let mut inner = self.shared.items.lock().unwrap_or_else(|e| e.into_inner());
        inner.closed = true;
        inner.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_counts_it() {
        let dropped = Counter::default();
        let (tx, mut rx) = bounded(3, dropped.clone());
        for i in 0..5 {
            assert!(tx.push(i));
        }
        assert_eq!(dropped.get(), 2);
        assert_eq!(rx.len(), 3);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, Some(4));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn consumer_wakes_on_push_and_producer_sees_a_gone_consumer() {
        let (tx, mut rx) = bounded::<u32>(2, Counter::default());
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.push(7);
        assert_eq!(waiter.await.unwrap(), Some(7));
        assert!(!tx.push(8), "consumer dropped with the task");
    }
}
