//! Group execution: requests that arrive while one flush is at the database
//! go together in the next. Under light load a flush holds one request and
//! adds no wait; under heavy load one transaction serves many, which is
//! where PostgreSQL's time per refresh goes. No request waits for a timer.
//!
//! Every request is about one account, and a batch holds each account at
//! most once (one multi-row UPDATE cannot apply two rows to one account): a
//! second request for an account already in the batch waits for the next.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot};

/// A request with the account it concerns.
pub trait Keyed {
    fn account(&self) -> &str;
}

type Queued<T, R> = (T, oneshot::Sender<R>);

/// The handle requests are sent to; cheap to clone. Dropping every handle
/// ends the flusher after its last flush.
pub struct Batcher<T, R> {
    requests: mpsc::UnboundedSender<Queued<T, R>>,
    flushes: Arc<AtomicU64>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
            flushes: self.flushes.clone(),
        }
    }
}

impl<T, R> Batcher<T, R>
where
    T: Keyed + Send + 'static,
    R: Send + 'static,
{
    /// Starts `flushers` flushers on the current runtime: while one batch
    /// is at the database the next one forms and goes. `flush` answers a
    /// batch of up to `max` requests, one answer per request, in order.
    pub fn start<F, Fut>(max: usize, flushers: usize, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (requests, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        let flush = Arc::new(flush);
        let flushes = Arc::new(AtomicU64::new(0));
        for _ in 0..flushers.max(1) {
            tokio::spawn(flush_until_closed(
                queue.clone(),
                max,
                flush.clone(),
                flushes.clone(),
            ));
        }
        Self { requests, flushes }
    }

    /// The request's answer, or the request back when the flusher is gone
    /// (the runtime is shutting down) so the caller can run it alone.
    pub async fn submit(&self, request: T) -> Result<R, ()> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((request, reply)).map_err(|_| ())?;
        answer.await.map_err(|_| ())
    }

    /// Flushes so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

/// One flusher. Batches that two flushers have at the database at once may
/// name the same account; its row lock orders them, and each statement's
/// own conditions (the fence, a free lease) decide on the row it then sees.
async fn flush_until_closed<T, R, F, Fut>(
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Queued<T, R>>>>,
    max: usize,
    flush: Arc<F>,
    flushes: Arc<AtomicU64>,
) where
    T: Keyed,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    let mut held_back: Vec<Queued<T, R>> = Vec::new();
    loop {
        let mut batch = Batch::new(max);
        for request in std::mem::take(&mut held_back) {
            batch.add(request);
        }
        if batch.requests.is_empty() {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(request) => batch.add(request),
                None => return,
            }
            batch.fill_from(&mut queue);
        } else if let Ok(mut queue) = queue.try_lock() {
            // Held-back requests go now; a flusher waiting for new ones
            // holds the queue, and they must not wait behind it.
            batch.fill_from(&mut queue);
        }
        held_back = batch.held_back;
        let (requests, replies): (Vec<T>, Vec<_>) = batch.requests.into_iter().unzip();
        let answers = flush(requests).await;
        flushes.fetch_add(1, Ordering::Relaxed);
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The caller may have gone; its answer is in the database.
            let _ = reply.send(answer);
        }
    }
}

/// The requests of one flush, each account at most once; the rest wait.
struct Batch<T, R> {
    max: usize,
    requests: Vec<Queued<T, R>>,
    accounts: HashSet<String>,
    held_back: Vec<Queued<T, R>>,
}

impl<T: Keyed, R> Batch<T, R> {
    fn new(max: usize) -> Self {
        Self {
            max,
            requests: Vec::with_capacity(max),
            accounts: HashSet::new(),
            held_back: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.requests.len() >= self.max
    }

    fn fill_from(&mut self, queue: &mut mpsc::UnboundedReceiver<Queued<T, R>>) {
        while !self.is_full() {
            let Ok(request) = queue.try_recv() else { break };
            self.add(request);
        }
    }

    fn add(&mut self, request: Queued<T, R>) {
        if !self.is_full() && self.accounts.insert(request.0.account().to_owned()) {
            self.requests.push(request);
        } else {
            self.held_back.push(request);
        }
    }
}
