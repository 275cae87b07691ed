//! Active health probes: each validator probes the instances whose
//! registration asked for one and reports verdicts as signed HealthReport
//! transactions (the state machine turns an instance only on f+1 reports).
//!
//! Schedule per instance: every `interval_secs` of its spec (config default
//! when 0) while it passes; after a failure, back off exponentially from
//! `probes.backoff_base_secs` up to `probes.backoff_max_secs`. A report is
//! submitted only when this validator's verdict differs from the one the
//! committed state holds for it, and not again while that report is pending.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_consensus::state::StateReader;
use palisade_crypto::{Health, InstanceRecord, ProbeKind, SecretKey, TxBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::config::ProbeConfig;
use crate::context::Context;
use crate::metrics::ReasonLabel;
use crate::shutdown::Shutdown;

type Target = (String, String, String);

struct Slot {
    instance: InstanceRecord,
    next_due: Instant,
    failures: u32,
    /// Verdict submitted and when, until the state reflects it.
    submitted: Option<(bool, Instant)>,
}

pub(crate) struct Prober {
    ctx: Arc<Context>,
    key: SecretKey,
    config: ProbeConfig,
    slots: HashMap<Target, Slot>,
    scanned_height: Option<u64>,
    last_scan: Option<Instant>,
}

/// Probe one endpoint: TCP connect, or HTTP/1.1 GET whose status is 2xx.
pub(crate) async fn probe_once(kind: &ProbeKind, host: &str, port: u16, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        match kind {
            ProbeKind::Tcp => Some(true),
            ProbeKind::Http { path } => {
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: palisade-probe\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await.ok()?;
                let mut buf = [0u8; 64];
                let mut len = 0;
                while len < 12 {
                    let n = stream.read(&mut buf[len..]).await.ok()?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                }
                let line = std::str::from_utf8(&buf[..len]).ok()?;
                let status = line.strip_prefix("HTTP/1.")?.get(2..5)?;
                Some(status.starts_with('2'))
            }
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

impl Prober {
    pub(crate) fn new(ctx: Arc<Context>, key: SecretKey, config: ProbeConfig) -> Self {
        Prober {
            ctx,
            key,
            config,
            slots: HashMap::new(),
            scanned_height: None,
            last_scan: None,
        }
    }

    /// Refresh the probe targets from the latest committed state (at most
    /// once per default interval). The first scan reads every service; later
    /// ones re-read only the services the heights since changed (the node's
    /// per-height change index), so an idle registry of many instances costs
    /// nothing here. A gap longer than [`crate::scan::FULL_RESCAN_AFTER`] heights (or a
    /// missing index entry) falls back to a full scan.
    fn rescan(&mut self) {
        let now = Instant::now();
        if self
            .last_scan
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(self.config.interval_secs))
        {
            return;
        }
        self.last_scan = Some(now);
        let Ok(reader) = StateReader::latest(&self.ctx.store) else {
            return;
        };
        let Some(crate::scan::Scan {
            latest,
            services,
            full,
        }) = crate::scan::since(&self.ctx.store, &reader, self.scanned_height)
        else {
            return;
        };
        if full {
            // Services that are gone lose their slots; the others keep
            // theirs (and their backoff) and are refreshed below.
            let listed: std::collections::HashSet<(&str, &str)> = services
                .iter()
                .map(|(n, s)| (n.as_str(), s.as_str()))
                .collect();
            self.slots
                .retain(|(n, s, _), _| listed.contains(&(n.as_str(), s.as_str())));
        }
        self.scanned_height = Some(latest);
        for (ns, svc) in services {
            let instances: Vec<InstanceRecord> = match reader.service_record(&ns, &svc) {
                Ok(Some(service)) => service
                    .instances
                    .into_iter()
                    .filter(|i| i.probe.is_some())
                    .collect(),
                Ok(None) => Vec::new(),
                Err(e) => {
                    debug!(%ns, %svc, error = %e, "probe scan: service unreadable");
                    self.scanned_height = None; // try a full scan next time
                    continue;
                }
            };
            let keep: std::collections::HashSet<&str> =
                instances.iter().map(|i| i.instance.as_str()).collect();
            self.slots
                .retain(|(n, s, i), _| !(*n == ns && *s == svc) || keep.contains(i.as_str()));
            for instance in instances {
                let target = (ns.clone(), svc.clone(), instance.instance.clone());
                match self.slots.get_mut(&target) {
                    Some(slot) => slot.instance = instance,
                    None => {
                        self.slots.insert(
                            target,
                            Slot {
                                instance,
                                next_due: now,
                                failures: 0,
                                submitted: None,
                            },
                        );
                    }
                }
            }
        }
    }

    /// The verdict the committed state holds for this validator, if any.
    fn recorded_verdict(&self, instance: &InstanceRecord) -> bool {
        let me = self.key.public();
        let passing = instance.health == Health::Passing;
        if instance.dissenting_reporters.contains(&me) {
            !passing
        } else {
            passing
        }
    }

    fn report(&self, (ns, svc, inst): &Target, passing: bool) {
        let body = TxBody::HealthReport {
            namespace: ns.clone(),
            service: svc.clone(),
            instance: inst.clone(),
            passing,
        };
        match self.ctx.submit_own(&self.key, body) {
            Ok(id) => info!(%ns, %svc, %inst, passing, tx = %id, "health report submitted"),
            Err(e) => debug!(%ns, %svc, %inst, error = %e, "health report not admitted"),
        }
    }

    async fn tick(&mut self) {
        self.rescan();
        let now = Instant::now();
        let due: Vec<Target> = self
            .slots
            .iter()
            .filter(|(_, s)| s.next_due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        for target in due {
            let Some(slot) = self.slots.get(&target) else {
                continue;
            };
            let (Some(spec), Some(endpoint)) =
                (&slot.instance.probe, slot.instance.endpoints.first())
            else {
                continue;
            };
            let interval = match spec.interval_secs {
                0 => self.config.interval_secs,
                s => u64::from(s),
            };
            let passing = probe_once(&spec.kind, &endpoint.host, endpoint.port, timeout).await;
            let label = if passing { "pass" } else { "fail" };
            self.ctx
                .metrics
                .probes
                .get_or_create(&ReasonLabel {
                    reason: label.into(),
                })
                .inc();
            let recorded = self.recorded_verdict(&slot.instance);
            let slot = self.slots.get_mut(&target).expect("slot present");
            let wait = if passing {
                slot.failures = 0;
                interval
            } else {
                slot.failures = slot.failures.saturating_add(1);
                let exp = (slot.failures - 1).min(16);
                self.config
                    .backoff_base_secs
                    .saturating_mul(1 << exp)
                    .min(self.config.backoff_max_secs)
            };
            slot.next_due = Instant::now() + Duration::from_secs(wait);
            let recently = slot
                .submitted
                .is_some_and(|(v, at)| v == passing && at.elapsed() < Duration::from_secs(30));
            if passing != recorded && !recently {
                slot.submitted = Some((passing, Instant::now()));
                self.report(&target, passing);
            }
        }
    }

    pub(crate) async fn run(mut self, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = ticker.tick() => self.tick().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn http_server(status: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_and_tcp_probes_tell_pass_from_fail() {
        let t = Duration::from_secs(5);
        let ok = http_server("200 OK").await;
        let bad = http_server("503 Service Unavailable").await;
        let path = ProbeKind::Http {
            path: "/health".into(),
        };
        assert!(probe_once(&path, "127.0.0.1", ok, t).await);
        assert!(!probe_once(&path, "127.0.0.1", bad, t).await);
        assert!(probe_once(&ProbeKind::Tcp, "127.0.0.1", bad, t).await);
        // A port nobody listens on: bind, learn the port, close.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(!probe_once(&ProbeKind::Tcp, "127.0.0.1", closed, t).await);
    }
}
