//! Filters on verified answers: by labels and health for a service's
//! instances, by name prefix for a namespace's services. They run on what
//! was verified, after verification: the proof covers the whole service (or
//! namespace), so a filtered answer is complete for its filter, and a node
//! cannot hide an instance that matches it.

use palisade_crypto::{Health, InstanceRecord};

use crate::{VerifiedNamespace, VerifiedService};

/// Which instances of a verified service a caller wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Every `(key, value)` must be a label of the instance.
    pub labels: Vec<(String, String)>,
    /// Only instances that are passing and whose lease is live at the
    /// certified block time (never by the local clock).
    pub healthy: bool,
}

/// Whether an instance is passing with a live lease at `block_time_ms`, the
/// certified block time of the answer it came in: the one rule for "healthy"
/// (lookups with `--healthy`, the DNS face).
pub fn is_healthy(instance: &InstanceRecord, block_time_ms: u64) -> bool {
    instance.health == Health::Passing && instance.lease_expires_at_ms > block_time_ms
}

impl InstanceFilter {
    /// Whether `instance` (of an answer certified at `block_time_ms`) passes.
    pub fn matches(&self, instance: &InstanceRecord, block_time_ms: u64) -> bool {
        (!self.healthy || is_healthy(instance, block_time_ms))
            && self
                .labels
                .iter()
                .all(|(k, v)| instance.labels.iter().any(|l| &l.key == k && &l.value == v))
    }

    /// Whether the filter keeps everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && !self.healthy
    }

    /// `service` with only the instances that pass (a proven absence stays
    /// one).
    pub fn apply(&self, service: &VerifiedService) -> VerifiedService {
        let mut out = service.clone();
        if let Some(record) = out.record.as_mut() {
            record
                .instances
                .retain(|i| self.matches(i, service.timestamp_ms));
        }
        out
    }
}

/// `namespace` with only the services whose name starts with `prefix`.
pub fn services_with_prefix(namespace: &VerifiedNamespace, prefix: &str) -> VerifiedNamespace {
    let mut out = namespace.clone();
    out.services.retain(|s| s.starts_with(prefix));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{Digest, Label, PublicKey, ServiceRecord};

    fn inst(id: &str, labels: &[(&str, &str)], health: Health, lease: u64) -> InstanceRecord {
        InstanceRecord {
            instance: id.into(),
            owner: PublicKey::default(),
            endpoints: vec![],
            labels: labels
                .iter()
                .map(|(k, v)| Label {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            version: String::new(),
            ttl_secs: 30,
            registered_at_ms: 0,
            lease_expires_at_ms: lease,
            health,
            dissenting_reporters: vec![],
            probe: None,
        }
    }

    fn service(instances: Vec<InstanceRecord>) -> VerifiedService {
        VerifiedService {
            namespace: "prod".into(),
            service: "api".into(),
            height: 7,
            timestamp_ms: 1_000,
            epoch: 0,
            state_root: Digest::default(),
            record: Some(ServiceRecord {
                namespace: "prod".into(),
                service: "api".into(),
                instances,
            }),
        }
    }

    fn ids(s: &VerifiedService) -> Vec<&str> {
        s.instances().iter().map(|i| i.instance.as_str()).collect()
    }

    #[test]
    fn labels_must_all_match_and_healthy_means_passing_with_a_live_lease() {
        let s = service(vec![
            inst(
                "a",
                &[("zone", "a"), ("tier", "web")],
                Health::Passing,
                2_000,
            ),
            inst("b", &[("zone", "b")], Health::Passing, 2_000),
            inst("c", &[("zone", "a")], Health::Failing, 2_000),
            inst("d", &[("zone", "a")], Health::Passing, 1_000),
        ]);
        let all = InstanceFilter::default();
        assert!(all.is_empty());
        assert_eq!(ids(&all.apply(&s)), ["a", "b", "c", "d"]);
        let zone_a = InstanceFilter {
            labels: vec![("zone".into(), "a".into())],
            healthy: false,
        };
        assert_eq!(ids(&zone_a.apply(&s)), ["a", "c", "d"]);
        let both = InstanceFilter {
            labels: vec![("zone".into(), "a".into()), ("tier".into(), "web".into())],
            healthy: false,
        };
        assert_eq!(ids(&both.apply(&s)), ["a"]);
        // d's lease ends at the certified block time: not live.
        let healthy = InstanceFilter {
            labels: vec![("zone".into(), "a".into())],
            healthy: true,
        };
        assert_eq!(ids(&healthy.apply(&s)), ["a"]);
        // The certified height and root stay those of the whole answer.
        assert_eq!(healthy.apply(&s).height, 7);
    }

    #[test]
    fn a_prefix_keeps_the_services_that_start_with_it() {
        let ns = VerifiedNamespace {
            namespace: "prod".into(),
            height: 3,
            timestamp_ms: 0,
            epoch: 0,
            services: vec!["api".into(), "api-v2".into(), "db".into()],
        };
        assert_eq!(services_with_prefix(&ns, "api").services, ["api", "api-v2"]);
        assert!(services_with_prefix(&ns, "x").services.is_empty());
    }
}
