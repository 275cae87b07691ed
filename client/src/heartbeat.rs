//! A background task that renews an instance's lease until stopped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::{Client, ClientError, InstanceRef, Signer};

/// What a heartbeat task did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatReport {
    /// Heartbeats committed and applied.
    pub renewals: u64,
    /// Heartbeats that failed.
    pub failures: u64,
    /// The latest failure.
    pub last_error: Option<ClientError>,
}

/// Renews a lease every `interval` (each heartbeat waits for its verified
/// commit receipt and confirms the renewed lease, see [`Client::heartbeat`]) until [`HeartbeatTask::stop`] is called or the task is dropped.
#[derive(Debug)]
pub struct HeartbeatTask {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<HeartbeatReport>,
}

impl HeartbeatTask {
    /// Start renewing `instance`'s lease, first after one `interval`.
    pub fn spawn(
        client: Arc<Client>,
        mut signer: Signer,
        instance: InstanceRef,
        interval: Duration,
    ) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let mut report = HeartbeatReport::default();
            loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return report,
                }
                match client.heartbeat(&mut signer, &instance) {
                    Ok(receipt) => {
                        report.renewals += 1;
                        tracing::debug!(height = receipt.block.height, instance = %instance.instance, "lease renewed");
                    }
                    Err(e) => {
                        report.failures += 1;
                        tracing::warn!(error = %e, instance = %instance.instance, "heartbeat failed");
                        report.last_error = Some(e);
                    }
                }
            }
        });
        HeartbeatTask { stop, handle }
    }

    /// Stop renewing (after any heartbeat in flight) and report.
    pub fn stop(self) -> HeartbeatReport {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_else(|_| HeartbeatReport {
            last_error: Some(ClientError::Invalid("heartbeat thread panicked".into())),
            ..HeartbeatReport::default()
        })
    }
}
