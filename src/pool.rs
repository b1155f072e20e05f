//! A fixed pool of worker threads fed through one channel: the Rust Book's
//! final project (chapter 21), for any job at all.
//!
//! Introduced in lesson 04 (lessons/04-http-server.md), where each job serves
//! one connection; rungs 6 and 7 hand it Python calls.
//!
//! ```text
//!   execute(job) ──► mpsc channel ──► worker 0 ─┐
//!                                ├──► worker 1  ├─ each: take a job, run it, repeat
//!                                └──► worker N-1┘
//! ```
//!
//! Dropping the pool is the shutdown: no new job can be queued, every worker
//! finishes the jobs already queued and the one it is running, and the drop
//! waits for them all.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};

/// Anything a worker can run: called once, sent to another thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// How a worker thread runs its loop of jobs: it is handed the loop and
/// must call it, once. [`ThreadPool::new`] just calls it; a rung that needs
/// something set up once per thread and kept for all its jobs wraps it
/// (rung 6 gives each thread its Python thread state for its whole life,
/// instead of making and destroying one for every call).
pub type Setup = fn(&mut (dyn FnMut() + Send));

/// A fixed set of threads taking jobs from one channel.
///
/// `mpsc` has many senders but one receiver, so the workers share the
/// receiver behind a `Mutex`: whoever holds the lock waits in `recv`, and
/// the others wait for the lock. Each job is taken by exactly one worker.
pub struct ThreadPool {
    /// `None` once the pool is being dropped: the channel is closed.
    sender: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Built with size 0: no workers, a new thread for every job.
    per_job: bool,
    setup: Setup,
}

impl ThreadPool {
    /// Start `size` workers that run their loop as it is (see below).
    pub fn new(size: usize) -> io::Result<ThreadPool> {
        ThreadPool::with_setup(size, |worker_loop| worker_loop())
    }

    // ANCHOR: thread_pool
    /// Start `size` workers, named `worker 0` … `worker N-1` (the names show
    /// in `--trace`, in `ps -L`, and in a panic message), each running its
    /// loop inside `setup` ([`Setup`]). With `size` 0 none start, and every
    /// job gets a thread of its own, as Python's `ThreadingHTTPServer` gives
    /// every connection one.
    pub fn with_setup(size: usize, setup: Setup) -> io::Result<ThreadPool> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = Vec::with_capacity(size);
        for id in 0..size {
            let receiver = Arc::clone(&receiver);
            let worker = thread::Builder::new()
                .name(format!("worker {id}"))
                .spawn(move || setup(&mut || worker_loop(id, &receiver)))?;
            workers.push(worker);
        }
        Ok(ThreadPool {
            sender: Some(sender),
            workers,
            per_job: size == 0,
            setup,
        })
    }
    // ANCHOR_END: thread_pool

    /// Queue `job` for the next free worker (with size 0: start its thread).
    ///
    /// The channel is unbounded: when every worker is busy, jobs wait in it.
    /// In production, a bounded queue (`sync_channel`) would make the caller
    /// wait instead; for a server, that leaves the waiting in the kernel's
    /// accept queue.
    pub fn execute<F>(&mut self, job: F) -> io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        if self.per_job {
            // Forget threads that have finished, so the list does not grow.
            self.workers.retain(|worker| !worker.is_finished());
            let setup = self.setup;
            let mut job = Some(job);
            let worker = thread::Builder::new()
                .name("thread per job".into())
                .spawn(move || setup(&mut || job.take().map_or((), |job| run(Box::new(job)))))?;
            self.workers.push(worker);
            return Ok(());
        }
        let sender = self.sender.as_ref().expect("the sender lives until drop");
        // A send fails only if every worker is gone, which `worker_loop`
        // never allows (a panicking job costs the job, not the worker).
        sender
            .send(Box::new(job))
            .map_err(|_| io::Error::other("every worker thread has exited"))
    }
}

impl Drop for ThreadPool {
    /// Close the channel, then wait for every worker: each one leaves its
    /// loop once the queue is empty and its job is done.
    fn drop(&mut self) {
        drop(self.sender.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

// ANCHOR: worker_loop
fn worker_loop(id: usize, receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The guard lives only inside the closure: the lock is released as
        // soon as `recv` returns, not while this worker runs the job.
        let next = receiver.lock().map(|queue| queue.recv());
        let Ok(Ok(job)) = next else {
            crate::trace!("worker {id}: the queue is closed and empty; exit");
            return;
        };
        run(job);
    }
}
// ANCHOR_END: worker_loop

/// Run one job. A bug in it must cost that job, not the worker: catch the
/// panic here and the thread lives on to take the next job. (The panic's
/// own message, with the thread's name, is already on stderr.)
fn run(job: Job) {
    if catch_unwind(AssertUnwindSafe(job)).is_err() {
        let me = thread::current();
        let name = me.name().unwrap_or("a pool thread");
        eprintln!("[pool] {name}: a job panicked; the thread carries on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn dropping_the_pool_finishes_every_queued_job() {
        for size in [0, 1, 3] {
            let done = Arc::new(AtomicUsize::new(0));
            let mut pool = ThreadPool::new(size).unwrap();
            for _ in 0..20 {
                let done = Arc::clone(&done);
                pool.execute(move || {
                    thread::sleep(Duration::from_millis(2));
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
            }
            drop(pool);
            assert_eq!(done.load(Ordering::SeqCst), 20, "size {size}");
        }
    }

    #[test]
    fn a_panicking_job_costs_the_job_not_the_worker() {
        let (sender, receiver) = mpsc::channel();
        let mut pool = ThreadPool::new(1).unwrap();
        pool.execute(|| panic!("a bug in one job")).unwrap();
        pool.execute(move || {
            sender
                .send(thread::current().name().map(String::from))
                .unwrap()
        })
        .unwrap();
        let ran_on = receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(ran_on.as_deref(), Some("worker 0"));
    }

    #[test]
    fn setup_runs_once_per_thread_around_all_its_jobs() {
        static SETUPS: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static IN_SETUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        let setup: Setup = |worker_loop| {
            SETUPS.fetch_add(1, Ordering::SeqCst);
            IN_SETUP.with(|flag| flag.set(true));
            worker_loop();
        };
        let mut pool = ThreadPool::with_setup(2, setup).unwrap();
        let (sender, receiver) = mpsc::channel();
        for _ in 0..10 {
            let sender = sender.clone();
            pool.execute(move || sender.send(IN_SETUP.with(|flag| flag.get())).unwrap())
                .unwrap();
        }
        for _ in 0..10 {
            assert!(receiver.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        drop(pool);
        assert_eq!(SETUPS.load(Ordering::SeqCst), 2, "one setup per thread");
    }

    #[test]
    fn jobs_run_side_by_side() {
        // Two jobs that each wait for the other can only finish on two threads.
        let mut pool = ThreadPool::new(2).unwrap();
        let (a_send, a_recv) = mpsc::channel();
        let (b_send, b_recv) = mpsc::channel();
        let (done_send, done_recv) = mpsc::channel();
        let done_b = done_send.clone();
        pool.execute(move || {
            a_send.send(()).unwrap();
            b_recv.recv_timeout(Duration::from_secs(5)).unwrap();
            done_send.send(()).unwrap();
        })
        .unwrap();
        pool.execute(move || {
            b_send.send(()).unwrap();
            a_recv.recv_timeout(Duration::from_secs(5)).unwrap();
            done_b.send(()).unwrap();
        })
        .unwrap();
        for _ in 0..2 {
            done_recv.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }
}
