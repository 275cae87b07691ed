//! A cloneable shutdown signal shared by the node's tasks.

use tokio::sync::watch;

/// Resolves [`Shutdown::wait`] once the node is told to stop.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// Triggers the shutdown of every [`Shutdown`] made from it.
#[derive(Debug)]
pub(crate) struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// A trigger and its first signal.
    pub(crate) fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }
    /// Stop every task.
    pub(crate) fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Wait until shutdown was triggered (or the trigger dropped).
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
