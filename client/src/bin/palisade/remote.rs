//! `palisade lookup --remote B.json --dc NAME`: another datacenter's records
//! through this network's nodes, verified against B's validators (`watch
//! --remote B.json --dc NAME NS/SVC` streams them); and the
//! `local-first` policy (the local answer when it has a passing instance,
//! else the named datacenters in order).

use std::path::PathBuf;

use palisade_client::{
    is_healthy, load_network_file, parse_service_path, terminal_safe, ClientError, InstanceFilter,
    RemoteDatacenter, VerifiedService,
};
use serde_json::json;

use crate::args::Read;
use crate::{client, now_ms, output};

/// The datacenters to ask, in order.
pub(crate) struct Plan {
    remotes: Vec<RemoteDatacenter>,
    local_first: bool,
}

impl Plan {
    pub(crate) fn new(
        files: &[PathBuf],
        names: &[String],
        local_first: bool,
    ) -> Result<Self, ClientError> {
        let mut loaded = Vec::new();
        for f in files {
            loaded.push(load_network_file(f)?);
        }
        let remotes = names
            .iter()
            .map(|name| {
                let network = loaded
                    .iter()
                    .find(|n| &n.datacenter == name)
                    .ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "--dc {name}: no --remote network file names datacenter {name:?}"
                        ))
                    })?;
                RemoteDatacenter::new(network)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if remotes.is_empty() {
            return Err(ClientError::Invalid("--dc names no datacenter".into()));
        }
        Ok(Plan {
            remotes,
            local_first,
        })
    }
}

fn passing(s: &VerifiedService) -> bool {
    s.instances().iter().any(|i| is_healthy(i, s.timestamp_ms))
}

fn show(
    read: &Read,
    datacenter: &str,
    service: &VerifiedService,
    lag_ms: u64,
    link: Option<&palisade_client::RemoteAnswer>,
) {
    let stale = link.is_some_and(|a| a.is_stale());
    if read.json {
        let mut value = output::service_json(service, now_ms(), stale);
        value["datacenter"] = json!(datacenter);
        value["lag_ms"] = json!(lag_ms);
        if let Some(a) = link {
            value["link"] = json!({
                "state": a.link.state,
                "imported_height": a.link.imported_height,
                "remote_height": a.link.remote_height,
                "verified": false,
            });
        }
        println!("{value}");
    } else {
        match link {
            Some(a) => println!(
                "datacenter {} (link {}, lag {} ms{})",
                terminal_safe(datacenter),
                terminal_safe(&a.link.state),
                lag_ms,
                if stale { ", STALE: served frozen" } else { "" }
            ),
            None => println!("datacenter {} (local)", terminal_safe(datacenter)),
        }
        print!("{}", output::service_table(service, now_ms(), stale));
    }
}

pub(crate) fn lookup(
    read: &Read,
    target: &str,
    filter: &InstanceFilter,
    plan: &Plan,
) -> Result<(), ClientError> {
    let (namespace, service) = parse_service_path(target)?;
    let client = client(&read.net, Some(read))?;
    let local_dc = client.network().datacenter.clone();
    let mut fallback: Option<(String, VerifiedService, u64)> = None;
    if plan.local_first {
        match client.lookup(&namespace, &service) {
            Ok(answer) => {
                let s = filter.apply(answer.service());
                let lag = now_ms().saturating_sub(s.timestamp_ms);
                if passing(&s) {
                    show(read, &local_dc, &s, lag, None);
                    return Ok(());
                }
                fallback = Some((local_dc.clone(), s, lag));
            }
            Err(e) => {
                tracing::warn!(error = %e, "local lookup failed; asking the remote datacenters")
            }
        }
    }
    let mut last_error = None;
    let mut first_remote = None;
    for remote in &plan.remotes {
        match client.lookup_remote(remote, &namespace, &service) {
            Ok(answer) => {
                let s = filter.apply(&answer.service);
                if !plan.local_first || passing(&s) {
                    show(read, remote.name(), &s, answer.lag_ms, Some(&answer));
                    return Ok(());
                }
                first_remote.get_or_insert((answer, s));
            }
            Err(e) => {
                tracing::warn!(datacenter = remote.name(), error = %e, "remote lookup failed");
                last_error = Some(e);
            }
        }
    }
    // Nothing passing anywhere: the local answer if it verified, else the
    // first remote one; else the last failure.
    if let Some((dc, s, lag)) = fallback {
        show(read, &dc, &s, lag, None);
        return Ok(());
    }
    if let Some((answer, s)) = first_remote {
        show(read, &answer.datacenter, &s, answer.lag_ms, Some(&answer));
        return Ok(());
    }
    Err(last_error
        .unwrap_or_else(|| ClientError::Unavailable(vec!["no datacenter answered".into()])))
}

/// `palisade watch --remote B.json --dc NAME NS/SVC`: every verified state
/// of the remote service as this network's nodes import it.
pub(crate) fn watch(
    read: &Read,
    target: &str,
    from_height: Option<u64>,
    plan: &Plan,
) -> Result<(), ClientError> {
    let (namespace, service) = parse_service_path(target)?;
    let client = client(&read.net, Some(read))?;
    let remote = &plan.remotes[0];
    for update in client.watch_remote(remote, &namespace, &service, from_height.unwrap_or(0)) {
        match update {
            Ok(a) => show(read, remote.name(), &a.service, a.lag_ms, Some(&a)),
            // A suspect node under test (--node) that lies ends the watch.
            Err(e) if read.net.node.is_some() && e.is_verification_failure() => return Err(e),
            Err(e) => eprintln!("palisade: watch: {}", terminal_safe(&e.to_string())),
        }
    }
    Ok(())
}
