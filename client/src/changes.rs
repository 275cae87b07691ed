//! What a namespace watch's `synced` proves (issue-13 review): the
//! namespace's change chain at the synced height `c`.
//!
//! The state holds the chain's newest link ([`StateKey::NamespaceLog`] ->
//! [`NamespaceLink`]), proven against `c`'s certified root; each link names
//! the digest and height of the one before it and the hash of the services
//! changed at its height. Walking the links from the head down to the
//! stream's first height `from` (inline in the event, or fetched from the
//! node when they did not fit) yields every service changed at a height in
//! `from..=c`, with the height of its newest change. A node cannot leave one
//! out: every link is checked against the digest the next one names, down
//! from the certified head, and its services against its hash.

use std::collections::BTreeMap;
use std::time::Instant;

use palisade_crypto::api::{ChangeLink, ChangesResponse, NamespaceChanges};
use palisade_crypto::{Digest, NamespaceLink, ProofError, StateKey};

use crate::node::{encode_component, NodeApi};
use crate::ClientError;

/// Most links one `synced` may make the client walk (each one height).
pub(crate) const MAX_LINKS: usize = 1 << 20;

/// Most distinct changed services one `synced` may name (the default of
/// [`crate::Watch::max_changed`]).
pub const MAX_CHANGED: usize = 1 << 16;

/// What a verified change chain says changed since the watch's start.
#[derive(Debug)]
pub(crate) enum Changed {
    /// Each changed service with the height of its newest change.
    Services(BTreeMap<String, u64>),
    /// More links or services than one `synced` may make the client walk:
    /// an honest chain can be that long after a long gap, so this is a
    /// limit, not a forgery; the watch re-lists the namespace instead.
    TooMany,
}

fn malformed(what: impl Into<String>) -> ClientError {
    ClientError::ForgedProof(ProofError::WrongRecord(what.into()))
}

/// Where the links come from: the event, or pages fetched from the node.
enum Source<'a> {
    Inline(std::slice::Iter<'a, ChangeLink>),
    Fetch {
        node: &'a NodeApi,
        page: std::vec::IntoIter<ChangeLink>,
        /// When the walk started and when it must end: a node that pages
        /// its chain one slow link at a time delays the watch by at most
        /// this long, then the watch moves on (wave-3 review H3).
        started: Instant,
        deadline: Instant,
    },
}

impl Source<'_> {
    /// The next link, which should be the link of height `height`.
    fn next(&mut self, namespace: &str, height: u64, from: u64) -> Result<ChangeLink, ClientError> {
        match self {
            Source::Inline(links) => links.next().cloned().ok_or_else(|| {
                malformed(format!(
                    "the change chain of {namespace} ends above height {from} (link {height} missing)"
                ))
            }),
            Source::Fetch {
                node,
                page,
                started,
                deadline,
            } => {
                if let Some(link) = page.next() {
                    return Ok(link);
                }
                if Instant::now() >= *deadline {
                    return Err(ClientError::Timeout {
                        what: format!(
                            "the change chain of {namespace} from {} (still at height {height}, walking down to {from})",
                            node.url()
                        ),
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
                let answer: ChangesResponse = node.get(&format!(
                    "/v1/namespaces/{}/changes?height={height}&from_height={from}",
                    encode_component(namespace)
                ))?;
                *page = answer.links.into_iter();
                page.next().ok_or_else(|| {
                    malformed(format!("no link of {namespace} at height {height}"))
                })
            }
        }
    }
}

/// Verify `changes` against the certified `root` and return every service
/// of `namespace` changed at a height of at least `from`, with the height
/// of its newest change. `from = None` (a watch that started wherever the
/// node stood) checks the head only. Links fetched from the node must all
/// arrive before `deadline`.
pub(crate) fn changed_since(
    node: &NodeApi,
    namespace: &str,
    root: &Digest,
    changes: &NamespaceChanges,
    from: Option<u64>,
    deadline: Instant,
    max_changed: usize,
) -> Result<Changed, ClientError> {
    let key = StateKey::NamespaceLog {
        namespace: namespace.to_string(),
    };
    let proof = changes
        .proof
        .decode()
        .map_err(|e| malformed(format!("change chain proof: {e}")))?;
    let value = changes.value.as_ref().map(|v| v.bytes());
    proof
        .verify(root, &key, value)
        .map_err(ClientError::ForgedProof)?;
    let head: Option<NamespaceLink> = match &changes.value {
        None => None,
        Some(v) => Some(
            v.decode()
                .map_err(|e| malformed(format!("change chain head: {e}")))?,
        ),
    };
    let mut out = BTreeMap::new();
    let (Some(head), Some(from)) = (head, from) else {
        return Ok(Changed::Services(out));
    };
    if head.namespace != namespace {
        return Err(malformed(format!(
            "change chain head names namespace {}",
            head.namespace
        )));
    }
    let mut source = match &changes.links {
        Some(links) => Source::Inline(links.iter()),
        None => Source::Fetch {
            node,
            page: Vec::new().into_iter(),
            started: Instant::now(),
            deadline,
        },
    };
    let (mut expected, mut height) = (head.digest(), head.height);
    for _ in 0..MAX_LINKS {
        if height < from {
            return Ok(Changed::Services(out));
        }
        let entry = source.next(namespace, height, from)?;
        let link = entry
            .link
            .decode()
            .map_err(|e| malformed(format!("change link: {e}")))?;
        if link.digest() != expected || link.height != height {
            return Err(malformed(format!(
                "the link of {namespace} at height {height} is not the one the chain names"
            )));
        }
        if NamespaceLink::services_hash(&entry.services) != link.services_hash
            || entry.services.len() != link.count as usize
        {
            return Err(malformed(format!(
                "the services listed for {namespace} at height {height} are not the link's"
            )));
        }
        for service in entry.services {
            out.entry(service).or_insert(link.height);
        }
        if out.len() > max_changed {
            return Ok(Changed::TooMany);
        }
        if link.prev == Digest::ZERO {
            return Ok(Changed::Services(out));
        }
        if link.prev_height >= link.height {
            return Err(malformed(format!(
                "change link of {namespace} at {height} names a later one ({})",
                link.prev_height
            )));
        }
        (expected, height) = (link.prev, link.prev_height);
    }
    Ok(Changed::TooMany)
}
