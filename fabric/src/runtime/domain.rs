//! Crash domains: the tasks of one simulated node, killed together.
//!
//! In simulation every node of a run shares one turmoil host (one runtime), so a
//! node's crash cannot drop a runtime. Each node's root future runs instead inside a
//! [`Domain`], a task-local carrying the node's name, a cancelled flag and the abort
//! handles of every task the node spawned. [`spawn`] inside a domain spawns into it (the
//! new task inherits the domain, so nested spawns do too); a crash aborts every task
//! of the domain, the root included, and with them goes every `Arc` the node held:
//! its memory, its channel ends and its in-process streams, which its peers then see
//! close. Outside a domain (live and processes modes) [`spawn`] is `tokio::spawn`.
//!
//! [`DomainExec`] hands the same rule to hyper and tonic, which spawn connection and
//! stream tasks of their own.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::futures::TaskLocalFuture;
use tokio::task::{AbortHandle, JoinHandle};

tokio::task_local! {
    /// The domain of the node whose task is running.
    static DOMAIN: Domain;
}

/// The tasks of one life of one simulated node.
#[derive(Clone)]
pub struct Domain(Arc<Inner>);

struct Inner {
    /// The node's name.
    node: Arc<str>,
    /// Set once, by [`Domain::crash`]; a crashed domain spawns nothing that runs.
    crashed: AtomicBool,
    /// Abort handles of the domain's tasks, finished ones pruned now and then.
    tasks: Mutex<Tasks>,
}

struct Tasks {
    handles: Vec<AbortHandle>,
    /// Prune finished handles when there are this many (doubles with the live ones).
    prune_at: usize,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("node", &self.0.node)
            .field("crashed", &self.is_crashed())
            .finish_non_exhaustive()
    }
}

impl Domain {
    /// A fresh domain for one life of `node`.
    pub fn new(node: &str) -> Self {
        Domain(Arc::new(Inner {
            node: node.into(),
            crashed: AtomicBool::new(false),
            tasks: Mutex::new(Tasks {
                handles: Vec::new(),
                prune_at: 64,
            }),
        }))
    }

    /// The domain of the running task, if it runs in one.
    pub fn current() -> Option<Domain> {
        DOMAIN.try_with(Clone::clone).ok()
    }

    /// The node this domain runs.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// Whether the domain was crashed.
    pub fn is_crashed(&self) -> bool {
        self.0.crashed.load(Ordering::Acquire)
    }

    /// Whether `self` and `other` are the same life of a node.
    pub fn same(&self, other: &Domain) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.0
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `fut` in this domain: `fut` and everything it spawns belong to it.
    pub fn scope<F: Future>(&self, fut: F) -> TaskLocalFuture<Domain, F> {
        DOMAIN.scope(self.clone(), fut)
    }

    /// Spawns `fut` as a task of this domain. In a crashed domain the task is aborted
    /// at once (it never runs).
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = tokio::spawn(self.scope(fut));
        self.adopt(task.abort_handle());
        task
    }

    /// Counts a task spawned elsewhere (the root, a local task) as one of this domain.
    pub fn adopt(&self, task: AbortHandle) {
        if self.is_crashed() {
            task.abort();
            return;
        }
        let mut t = self.lock();
        if t.handles.len() >= t.prune_at {
            t.handles.retain(|h| !h.is_finished());
            t.prune_at = (t.handles.len() * 2).max(64);
        }
        t.handles.push(task);
        drop(t);
        // A crash between the check and the push: abort what it missed.
        if self.is_crashed() {
            self.abort_all();
        }
    }

    /// Crashes the domain: aborts every task (their futures are dropped when the
    /// runtime next runs, within the current step) and refuses new ones.
    pub fn crash(&self) {
        self.0.crashed.store(true, Ordering::Release);
        self.abort_all();
    }

    fn abort_all(&self) {
        let handles = std::mem::take(&mut self.lock().handles);
        for h in handles {
            h.abort();
        }
    }
}

/// Spawns `fut` in the calling task's crash domain, or with `tokio::spawn` outside one
/// (live and processes modes, tests). Node code spawns only through this.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Domain::current() {
        Some(d) => d.spawn(fut),
        None => tokio::spawn(fut),
    }
}

/// An executor for hyper and tonic that spawns into a domain fixed at creation (or
/// plainly, without one), so that connection and stream tasks die with their node.
#[derive(Clone, Debug, Default)]
pub struct DomainExec(pub Option<Domain>);

impl DomainExec {
    /// The executor of the calling task's domain.
    pub fn current() -> Self {
        DomainExec(Domain::current())
    }
}

impl<F> hyper::rt::Executor<F> for DomainExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        match &self.0 {
            Some(d) => drop(d.spawn(fut)),
            None => drop(tokio::spawn(fut)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nested_spawns_inherit_the_domain_and_die_with_it() {
        let d = Domain::new("n1");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let inner_tx = tx.clone();
        let root = d.spawn(async move {
            let seen = Domain::current().map(|d| d.node().to_string());
            assert_eq!(seen.as_deref(), Some("n1"));
            spawn(async move {
                assert!(Domain::current().is_some());
                let _keep = inner_tx;
                std::future::pending::<()>().await;
            });
            std::future::pending::<()>().await;
        });
        drop(tx);
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        d.crash();
        assert!(root.await.unwrap_err().is_cancelled());
        // The nested task's sender went with it.
        assert_eq!(rx.recv().await, None);
        // A crashed domain runs nothing new.
        let late = d.spawn(async { 1 });
        assert!(late.await.unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn finished_tasks_are_pruned() {
        let d = Domain::new("n2");
        for _ in 0..1000 {
            d.spawn(async {}).await.unwrap();
        }
        assert!(d.lock().handles.len() <= 128);
        assert!(Domain::current().is_none());
    }
}
