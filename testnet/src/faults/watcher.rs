//! A verified namespace watch beside the load: every acknowledged
//! registration must reach it (at its height or later), through whichever
//! nodes the client has to route around. Bounded: the thread stops when
//! asked, at its next event or error.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use palisade_client::{Client, ClientConfig, ClientError};
use palisade_crypto::NetworkFile;

use crate::faults::load::{Acked, LOAD_NAMESPACE};

/// Per service: every delivered state, as (height, instance ids).
type Seen = HashMap<String, Vec<(u64, BTreeSet<String>)>>;

/// A running watch of the load's namespace.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Watch the load namespace from just after its current verified height.
    pub fn start(network: &NetworkFile) -> Result<Watcher, ClientError> {
        let client = Client::new(
            network.clone(),
            ClientConfig {
                request_timeout: Duration::from_secs(3),
                ..ClientConfig::default()
            },
        )?;
        let from = client.lookup_fresh(LOAD_NAMESPACE, "svc0")?.0.height + 1;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen, errors) = (stop.clone(), seen.clone(), errors.clone());
            std::thread::spawn(move || {
                for item in client.watch(LOAD_NAMESPACE, None, Some(from)) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match item {
                        Ok(v) => {
                            let ids = v.instances().iter().map(|i| i.instance.clone()).collect();
                            seen.lock()
                                .expect("seen lock")
                                .entry(v.service.clone())
                                .or_default()
                                .push((v.height, ids));
                        }
                        Err(e) => {
                            let mut errors = errors.lock().expect("errors lock");
                            if errors.len() < 20 {
                                errors.push(e.to_string());
                            }
                        }
                    }
                }
            })
        };
        Ok(Watcher {
            stop,
            seen,
            errors,
            thread: Some(thread),
        })
    }

    fn missing(&self, acked: &[Acked]) -> Vec<Acked> {
        let seen = self.seen.lock().expect("seen lock");
        acked
            .iter()
            .filter(|a| {
                !seen.get(&a.service).is_some_and(|states| {
                    states
                        .iter()
                        .any(|(h, ids)| *h >= a.height && ids.contains(&a.instance))
                })
            })
            .cloned()
            .collect()
    }

    /// Wait (bounded by `within`) until every acknowledged registration was
    /// delivered; then stop. Returns the violations: registrations the watch
    /// never delivered, and how many errors it reported on the way.
    pub fn finish(mut self, acked: &[Acked], within: Duration) -> (Vec<String>, usize) {
        let deadline = Instant::now() + within;
        let mut missing = self.missing(acked);
        while !missing.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            missing = self.missing(acked);
        }
        self.stop.store(true, Ordering::SeqCst);
        // The thread leaves at its next event or error; it is not joined
        // here, since a watch between events can wait up to its stall bound.
        drop(self.thread.take());
        let errors = self.errors.lock().expect("errors lock").len();
        let violations = missing
            .iter()
            .take(5)
            .map(|a| {
                format!(
                    "the verified watch never delivered acknowledged {}/{} (height {})",
                    a.service, a.instance, a.height
                )
            })
            .chain((missing.len() > 5).then(|| format!("... {} missed in all", missing.len())))
            .collect();
        (violations, errors)
    }
}
