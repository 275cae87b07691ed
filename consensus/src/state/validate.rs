//! Stateless checks of transaction bodies against the genesis limits.
//!
//! Names (namespace, service, instance): 1..=`max_name_len` bytes of
//! lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter
//! or digit (safe in URLs, DNS-like, and unambiguous in logs). Label keys:
//! 1..=`max_label_key_len` bytes of ASCII letters, digits, `-`, `_`, `.`, `/`;
//! label values, hosts, versions and probe paths: printable ASCII without
//! spaces. Protocols: 1..=16 lowercase letters, digits, `+`, `-`, `.`.

use palisade_crypto::{Enrollment, ProbeKind, Registration, ValidatorSet};

use super::error::TxRejection;
use super::genesis::{Params, MAX_PROTOCOL_LEN};

fn printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// Check one name.
pub(crate) fn name(field: &str, value: &str, params: &Params) -> Result<(), TxRejection> {
    let bad = |reason: String| TxRejection::InvalidName {
        field: field.to_string(),
        reason,
    };
    if value.is_empty() || value.len() > params.max_name_len as usize {
        return Err(bad(format!(
            "length {} outside 1..={}",
            value.len(),
            params.max_name_len
        )));
    }
    let first = value.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(bad("must start with a lowercase letter or digit".into()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(*c)))
    {
        return Err(bad(format!("character {c:?} not allowed")));
    }
    Ok(())
}

/// Check a registration's body (not who may make it).
pub(crate) fn registration(reg: &Registration, params: &Params) -> Result<(), TxRejection> {
    name("namespace", &reg.namespace, params)?;
    name("service", &reg.service, params)?;
    name("instance", &reg.instance, params)?;
    if reg.endpoints.is_empty() || reg.endpoints.len() > params.max_endpoints as usize {
        return Err(TxRejection::InvalidEndpoint {
            index: 0,
            reason: format!(
                "{} endpoints, want 1..={}",
                reg.endpoints.len(),
                params.max_endpoints
            ),
        });
    }
    for (i, ep) in reg.endpoints.iter().enumerate() {
        let bad = |reason: &str| TxRejection::InvalidEndpoint {
            index: i as u64,
            reason: reason.to_string(),
        };
        let proto_ok = !ep.protocol.is_empty()
            && ep.protocol.len() as u64 <= MAX_PROTOCOL_LEN
            && ep
                .protocol
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !proto_ok {
            return Err(bad("protocol must be 1..=16 of [a-z0-9+-.]"));
        }
        if ep.host.is_empty() || ep.host.len() > params.max_host_len as usize {
            return Err(bad("host length out of range"));
        }
        if !printable(&ep.host) {
            return Err(bad("host must be printable ASCII without spaces"));
        }
        if ep.port == 0 {
            return Err(bad("port 0"));
        }
    }
    if reg.labels.len() > params.max_labels as usize {
        return Err(TxRejection::InvalidLabel {
            key: String::new(),
            reason: format!("{} labels, at most {}", reg.labels.len(), params.max_labels),
        });
    }
    for (i, label) in reg.labels.iter().enumerate() {
        let bad = |reason: &str| TxRejection::InvalidLabel {
            key: label.key.clone(),
            reason: reason.to_string(),
        };
        let key_ok = !label.key.is_empty()
            && label.key.len() <= params.max_label_key_len as usize
            && label
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if !key_ok {
            return Err(bad("key must be 1..=max_label_key_len of [A-Za-z0-9-_./]"));
        }
        if label.value.len() > params.max_label_value_len as usize || !printable(&label.value) {
            return Err(bad("value too long or not printable ASCII"));
        }
        if reg.labels[..i].iter().any(|l| l.key == label.key) {
            return Err(bad("duplicate key"));
        }
    }
    if reg.version.len() > params.max_text_len as usize || !printable(&reg.version) {
        return Err(TxRejection::InvalidVersion(format!(
            "at most {} printable ASCII bytes",
            params.max_text_len
        )));
    }
    if reg.ttl_secs == 0 || reg.ttl_secs > params.max_ttl_secs {
        return Err(TxRejection::InvalidTtl {
            got: reg.ttl_secs,
            max: params.max_ttl_secs,
        });
    }
    if let Some(probe) = &reg.probe {
        if probe.interval_secs == 0 || probe.interval_secs > params.max_ttl_secs {
            return Err(TxRejection::InvalidProbe(format!(
                "interval {}s outside 1..={}s",
                probe.interval_secs, params.max_ttl_secs
            )));
        }
        if let ProbeKind::Http { path } = &probe.kind {
            let ok = path.starts_with('/')
                && path.len() <= params.max_text_len as usize
                && printable(path);
            if !ok {
                return Err(TxRejection::InvalidProbe(
                    "http path must start with '/' and be printable ASCII".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Check an enrollment's body.
pub(crate) fn enrollment(e: &Enrollment, params: &Params) -> Result<(), TxRejection> {
    e.identity.to_verifying_key()?;
    if e.namespaces.is_empty() || e.namespaces.len() > params.max_namespaces_per_identity as usize {
        return Err(TxRejection::InvalidEnrollment(format!(
            "{} namespaces, want 1..={}",
            e.namespaces.len(),
            params.max_namespaces_per_identity
        )));
    }
    for (i, ns) in e.namespaces.iter().enumerate() {
        name("namespace", ns, params)?;
        if e.namespaces[..i].contains(ns) {
            return Err(TxRejection::InvalidEnrollment(format!(
                "namespace {ns:?} listed twice"
            )));
        }
    }
    Ok(())
}

/// Check a validator set: well formed, bounded, valid non-weak keys.
pub(crate) fn validator_set(set: &ValidatorSet, params: &Params) -> Result<(), TxRejection> {
    if set.validators.len() > params.max_validators as usize {
        return Err(TxRejection::InvalidValidatorSet(format!(
            "{} validators, at most {}",
            set.validators.len(),
            params.max_validators
        )));
    }
    set.validate()
        .map_err(|e| TxRejection::InvalidValidatorSet(e.to_string()))?;
    for v in &set.validators {
        v.key.to_verifying_key()?;
    }
    Ok(())
}
