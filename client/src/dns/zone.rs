//! Verified service records the DNS face answers from: verified on first
//! use, updated by a verified watch, verified again when older than
//! `refresh` or than `max_age` of certified time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::DnsConfig;
use crate::client::now_ms;
use crate::{Client, ClientError, Freshness, VerifiedService};

type Key = (String, String);

struct Entry {
    service: VerifiedService,
    checked: Instant,
    /// A watch thread keeps it up to date.
    watched: bool,
}

pub(crate) struct Zone {
    client: Arc<Client>,
    config: DnsConfig,
    entries: Mutex<HashMap<Key, Entry>>,
    watches: AtomicUsize,
    stopped: AtomicBool,
}

impl Zone {
    pub(crate) fn new(client: Arc<Client>, config: DnsConfig) -> Self {
        Zone {
            client,
            config,
            entries: Mutex::new(HashMap::new()),
            watches: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Watch threads end at their next event.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, service: &VerifiedService) -> bool {
        let freshness = Freshness {
            max_age: self.config.max_age,
            ..Freshness::default()
        };
        freshness.check(service.timestamp_ms, now_ms()).is_ok()
    }

    /// A verified record of `namespace/service` no older than the bounds
    /// (blocking: may ask the nodes).
    pub(crate) fn resolve(
        self: &Arc<Self>,
        namespace: &str,
        service: &str,
    ) -> Result<VerifiedService, ClientError> {
        let key = (namespace.to_string(), service.to_string());
        if let Some(e) = self.entries().get(&key) {
            if e.checked.elapsed() < self.config.refresh && self.fresh(&e.service) {
                return Ok(e.service.clone());
            }
        }
        let (verified, _) = self.client.lookup_fresh(namespace, service)?;
        if !self.fresh(&verified) {
            return Err(ClientError::Stale {
                age_ms: now_ms().saturating_sub(verified.timestamp_ms),
                max_age_ms: self.config.max_age.as_millis() as u64,
            });
        }
        let mut entries = self.entries();
        let known = entries.contains_key(&key);
        // Names that do not exist must not crowd out services that do: a
        // proven absence makes room for a present service.
        if !known && entries.len() >= self.config.max_services && verified.record.is_some() {
            let absent = entries
                .iter()
                .find(|(_, e)| e.service.record.is_none())
                .map(|(k, _)| k.clone());
            if let Some(k) = absent {
                entries.remove(&k);
            }
        }
        if !known && entries.len() >= self.config.max_services {
            return Ok(verified);
        }
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            service: verified.clone(),
            checked: Instant::now(),
            watched: false,
        });
        if verified.height >= entry.service.height {
            entry.service = verified.clone();
            entry.checked = Instant::now();
        }
        // Present services are watched; an absence is verified again after
        // `refresh`.
        if !entry.watched && entry.service.record.is_some() {
            entry.watched = self.start_watch(key, verified.height + 1);
        }
        // The newest verified record (the watch may have seen a later one).
        Ok(entry.service.clone())
    }

    /// Replace an entry with a newer verified record.
    fn update(&self, key: &Key, service: VerifiedService) {
        let mut entries = self.entries();
        if let Some(e) = entries.get_mut(key) {
            if service.height >= e.service.height {
                tracing::debug!(service = %service.name(), height = service.height, "dns entry updated by the watch");
                e.service = service;
                e.checked = Instant::now();
            }
        }
    }

    /// Start a watch thread for `key` from height `from`; false when the
    /// bound on watches is reached or the thread could not start.
    fn start_watch(self: &Arc<Self>, key: Key, from: u64) -> bool {
        if self.watches.fetch_add(1, Ordering::Relaxed) >= self.config.max_services {
            self.watches.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let zone = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(format!("dns-watch-{}-{}", key.0, key.1))
            .spawn(move || {
                let client = Arc::clone(&zone.client);
                for item in client.watch(&key.0, Some(&key.1), Some(from)) {
                    // Stopped, or its entry was dropped: the watch ends.
                    if zone.stopped.load(Ordering::Relaxed) || !zone.entries().contains_key(&key) {
                        break;
                    }
                    match item {
                        Ok(service) => zone.update(&key, service),
                        // The watch refused it (a lying node): nothing reaches DNS.
                        Err(e) => tracing::warn!(error = %e, "dns watch"),
                    }
                }
                zone.watches.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not start a dns watch");
                self.watches.fetch_sub(1, Ordering::Relaxed);
                false
            }
        }
    }
}
