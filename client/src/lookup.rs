//! Verified lookups: ask the nodes (failover, optionally k of them), keep
//! the highest verified answer, detect equivocation, and fall back to the
//! newest verified answer, marked stale, when no fresh one can be had.
//!
//! Freshness is checked apart from verification so that an answer whose
//! certificate and proof verify but which is older than the bound is kept as
//! a stale candidate: when the registry lost its quorum its nodes still
//! answer, with the last certified state, and services should keep finding
//! each other ([`ClientConfig::serve_stale`]), up to
//! [`ClientConfig::max_stale_age`].
//!
//! One node's garbage or forgery does not decide the outcome when others
//! answered: a verified stale answer from any node, or nodes that could not
//! be reached, make the failure an outage (served stale), whatever another
//! node sent. The cache keeps the newest verified answer: an older one
//! never replaces it.
//!
//! [`ClientConfig::serve_stale`]: crate::ClientConfig::serve_stale
//! [`ClientConfig::max_stale_age`]: crate::ClientConfig::max_stale_age

use std::thread;
use std::time::Duration;

use palisade_crypto::api::LookupResponse;

use crate::client::now_ms;
use crate::node::encode_component;
use crate::verify::verify_lookup;
use crate::{Client, ClientError, LookupAnswer, VerifiedService};

type Answer = (VerifiedService, LookupResponse);

/// What a round of asking the nodes produced.
struct Gathered {
    fresh: Option<Answer>,
    stale: Option<Answer>,
    errors: Vec<ClientError>,
}

fn keep_highest(slot: &mut Option<Answer>, candidate: Answer) {
    if slot
        .as_ref()
        .is_none_or(|(b, _)| candidate.0.height > b.height)
    {
        *slot = Some(candidate);
    }
}

/// The error that says the registry is out of reach or stopped advancing
/// (a verified but stale answer, or nodes that could not be reached),
/// among the errors of a round of nodes, if any.
fn outage_cause(errors: &[ClientError]) -> Option<ClientError> {
    if let Some(stale) = errors
        .iter()
        .find(|e| matches!(e, ClientError::Stale { .. }))
    {
        return Some(stale.clone());
    }
    let mut lines: Vec<String> = Vec::new();
    for e in errors.iter().filter(|e| e.is_unavailable()) {
        let line = e.to_string();
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    match lines.len() {
        0 => None,
        1 => errors.iter().find(|e| e.is_unavailable()).cloned(),
        _ => Some(ClientError::Unavailable(lines)),
    }
}

impl Client {
    /// Verified lookup of `namespace/service` (see
    /// [`ClientConfig::read_quorum`](crate::ClientConfig::read_quorum)). When
    /// no fresh answer can be had (no node reachable, or only stale
    /// certified state), the newest verified answer from the nodes or the
    /// cache is served as [`LookupAnswer::Stale`], unless
    /// [`serve_stale`](crate::ClientConfig::serve_stale) is off.
    pub fn lookup(&self, namespace: &str, service: &str) -> Result<LookupAnswer, ClientError> {
        let gathered = self.gather(namespace, service)?;
        if let Some((verified, response)) = gathered.fresh {
            self.remember(namespace, service, &response);
            return Ok(LookupAnswer::Fresh(verified));
        }
        // A node that lied does not hide an outage the others show; with
        // one node only, what it sent is the answer.
        let only_outages = gathered
            .errors
            .iter()
            .all(|e| e.is_unavailable() || matches!(e, ClientError::Stale { .. }));
        let (cause, outage) = match outage_cause(&gathered.errors) {
            Some(outage) if self.nodes().len() > 1 || only_outages => (outage, true),
            _ => (self.pick_error(gathered.errors), false),
        };
        if !self.config().serve_stale || !outage {
            return Err(cause);
        }
        let cached = match (&gathered.stale, self.cached(namespace, service)) {
            (_, Ok(cached)) => cached,
            // A broken cache does not hide a stale answer the nodes proved.
            (Some(_), Err(e)) => {
                tracing::warn!(error = %e, "ignoring the cache");
                None
            }
            (None, Err(e)) => return Err(e),
        };
        let now = now_ms();
        let service = match (gathered.stale, cached) {
            (Some((v, response)), c) if c.as_ref().is_none_or(|(cv, _)| v.height > cv.height) => {
                self.remember(namespace, service, &response);
                v
            }
            (_, Some((cv, _))) => cv,
            (_, None) => return Err(cause),
        };
        let age = Duration::from_millis(now.saturating_sub(service.timestamp_ms));
        let max_stale = self.config().max_stale_age;
        if age > max_stale {
            tracing::warn!(age_ms = age.as_millis() as u64, %cause, "stale answer too old to serve");
            return Err(ClientError::Stale {
                age_ms: age.as_millis() as u64,
                max_age_ms: max_stale.as_millis() as u64,
            });
        }
        Ok(LookupAnswer::Stale {
            service,
            age,
            cause,
        })
    }

    /// Cache a verified answer unless the cache holds a newer verified one.
    fn remember(&self, namespace: &str, service: &str, response: &LookupResponse) {
        if let Some(cache) = &self.cache {
            let height = self
                .cached_height(namespace, service, response)
                .unwrap_or(None);
            if let Some((new, old)) = height {
                if old > new {
                    tracing::debug!(new, old, "the cache holds a newer answer; kept");
                    return;
                }
            }
            if let Err(e) = cache.store(namespace, service, response) {
                tracing::warn!(error = %e, "could not cache the answer");
            }
        }
    }

    /// The heights of `response` and of the cached answer, both verified
    /// (`None` when nothing verifiable is cached).
    fn cached_height(
        &self,
        namespace: &str,
        service: &str,
        response: &LookupResponse,
    ) -> Result<Option<(u64, u64)>, ClientError> {
        let Some((cached, _)) = self.cached(namespace, service)? else {
            return Ok(None);
        };
        let new = verify_lookup(
            &self.trust_lock(),
            namespace,
            service,
            response,
            now_ms(),
            None,
        )?;
        Ok(Some((new.height, cached.height)))
    }

    /// The cached answer for a service, re-verified against the trusted
    /// validators (freshness aside), with its age.
    pub fn cached(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<(VerifiedService, Duration)>, ClientError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let Some(response) = cache.load(namespace, service)? else {
            return Ok(None);
        };
        let now = now_ms();
        let verified = verify_lookup(&self.trust_lock(), namespace, service, &response, now, None)?;
        let age = Duration::from_millis(now.saturating_sub(verified.timestamp_ms));
        Ok(Some((verified, age)))
    }

    /// Verified lookup from the nodes only, fresh or an error: the highest
    /// verified answer among the first `read_quorum` that verify, with the raw
    /// response. Two verified answers with different roots at one height are
    /// [`ClientError::Equivocation`] (proof that the fault bound was broken).
    pub fn lookup_fresh(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<(VerifiedService, LookupResponse), ClientError> {
        let gathered = self.gather(namespace, service)?;
        gathered
            .fresh
            .ok_or_else(|| self.pick_error(gathered.errors))
    }

    fn gather(&self, namespace: &str, service: &str) -> Result<Gathered, ClientError> {
        // The proof carries the instances: the decoded copy for people
        // (`record`, half the answer) is not asked for.
        let path = format!(
            "/v1/services/{}/{}?record=false",
            encode_component(namespace),
            encode_component(service)
        );
        let config = self.config();
        let wanted = config.read_quorum.clamp(1, self.nodes().len());
        let mut out = Gathered {
            fresh: None,
            stale: None,
            errors: Vec::new(),
        };
        let mut answers = 0;
        let mut roots = Vec::new();
        for pass in 0..=config.retries {
            if pass > 0 {
                thread::sleep(config.retry_backoff * 2u32.saturating_pow(pass - 1));
            }
            let first_of_pass = out.errors.len();
            for node in self.node_order() {
                let result = node.get::<LookupResponse>(&path).and_then(|response| {
                    let now = now_ms();
                    self.verified(node, |t| {
                        verify_lookup(t, namespace, service, &response, now, None)
                    })
                    .map(|v| (v, response, now))
                });
                let (v, response, now) = match result {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::warn!(node = node.url(), error = %e, "lookup failed");
                        out.errors.push(e);
                        continue;
                    }
                };
                if let Some(&(_, first)) = roots
                    .iter()
                    .find(|(h, root)| *h == v.height && *root != v.state_root)
                {
                    return Err(ClientError::Equivocation {
                        height: v.height,
                        first,
                        second: v.state_root,
                    });
                }
                roots.push((v.height, v.state_root));
                match config.freshness.check(v.timestamp_ms, now) {
                    Ok(()) => {
                        answers += 1;
                        if answers == 1 {
                            self.mark_preferred(node);
                        }
                        keep_highest(&mut out.fresh, (v, response));
                        if answers >= wanted {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = node.url(), error = %e, "lookup answer refused");
                        if matches!(e, ClientError::Stale { .. }) {
                            keep_highest(&mut out.stale, (v, response));
                        }
                        out.errors.push(e);
                    }
                }
            }
            if out.fresh.is_some()
                || !out.errors[first_of_pass..]
                    .iter()
                    .all(ClientError::is_unavailable)
            {
                break;
            }
        }
        Ok(out)
    }
}
