//! The import task of one link (DESIGN.md "Datacenters", Import): each
//! round asks f+1 remote nodes for their newest certificate (one honest
//! answer reveals a withheld head), verifies it against the remote trust
//! chain (followed from the remote genesis set, epoch by epoch), pulls the
//! net delta from a node that showed the newest head, checks the block-info
//! chain from the imported block up to the certified one, and lets the
//! mirror accept it only at the certified root. A node that sends a bad
//! delta, a bad certificate or nothing is skipped for a while and the next
//! one is asked. Two valid certificates for different blocks at one height,
//! or a valid chain that does not reach the imported block, freeze the link
//! and write an evidence file.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use borsh::BorshDeserialize;
use palisade_client::{ClientError, TrustedChain};
use palisade_crypto::api::EpochsResponse;
use palisade_crypto::dc::{
    EquivocationEvidence, ExportChanges, ExportHead, ExportSnapshot, LeafChange, LinkStatus,
    EXPORT_BINARY_TYPE, MAX_EXPORT_INFOS, MAX_EXPORT_LEAVES,
};
use palisade_crypto::{decode_capped, encode, BlockInfo, CommitCertificate, Digest};
use serde::de::DeserializeOwned;
use tracing::{debug, error, info, warn};

use super::mirror::{ImportRecord, Mirror};
use super::{Link, LinkError};

/// Largest answer read from a remote node.
const MAX_BODY: u64 = 16 << 20;
/// Most leaves a first import (snapshot) may hold.
pub(crate) const MAX_SNAPSHOT_LEAVES: usize = 4 << 20;
/// Most delta pages applied in one round.
const MAX_PAGES_PER_ROUND: usize = 16;
/// Rounds a misbehaving or silent node is skipped.
const PENALTY_ROUNDS: u32 = 20;
/// How often a running link asks the f witnesses for their heads.
const WITNESS_EVERY_MS: u64 = 1_000;

/// Timing of an import loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportTiming {
    /// Pause between rounds.
    pub poll: Duration,
    /// Per-request bound.
    pub request_timeout: Duration,
    /// How long a remote node may hold a head request when nothing changed
    /// (the idle link's heartbeat).
    pub head_wait: Duration,
    /// No verified head from any remote node this long: partitioned.
    pub partition_after_ms: u64,
    /// Heads verified but the remote height not advancing this long: remote stalled.
    pub stall_after_ms: u64,
}

impl Default for ImportTiming {
    fn default() -> Self {
        ImportTiming {
            poll: Duration::from_millis(20),
            // A black-holed request ends after head_wait + this; two such
            // rounds past partition_after_ms must stay under the 10 s bound.
            request_timeout: Duration::from_millis(1500),
            head_wait: Duration::from_secs(2),
            partition_after_ms: 6_000,
            stall_after_ms: 6_000,
        }
    }
}

/// One remote node, as the importer reads it.
pub trait Source: Send + Sync {
    /// Its name in logs.
    fn name(&self) -> String;
    /// `GET /v1/export/head?after=H`: may be held until a certified height
    /// above `H` changed the state, or a heartbeat time passed.
    fn head(&self, after: Option<u64>) -> Result<ExportHead, LinkError>;
    /// `GET /v1/export/changes?from_height=H`.
    fn changes(&self, from: u64) -> Result<ExportChanges, LinkError>;
    /// `GET /v1/export/changes?from_height=H&wait_ms=W`: held like a head
    /// request, answered with the delta (default: [`Source::changes`]).
    fn changes_wait(&self, from: u64) -> Result<ExportChanges, LinkError> {
        self.changes(from)
    }
    /// `GET /v1/export/snapshot?height=C&after=K`.
    fn snapshot(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, LinkError>;
    /// `GET /v1/epochs?from=E`.
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, LinkError>;
}

/// A remote node over HTTP.
pub struct HttpSource {
    url: String,
    agent: ureq::Agent,
    head_wait_ms: u64,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl HttpSource {
    /// A source at `url`, counting the bytes it reads into `bytes`; a head
    /// request is held at most `timing.head_wait`, every request is bounded
    /// by that plus `timing.request_timeout`.
    pub fn new(url: &str, timing: &ImportTiming, bytes: Arc<std::sync::atomic::AtomicU64>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timing.request_timeout))
            .timeout_global(Some(timing.request_timeout + timing.head_wait))
            .build()
            .into();
        HttpSource {
            url: url.trim_end_matches('/').to_string(),
            agent,
            head_wait_ms: timing.head_wait.as_millis() as u64,
            bytes,
        }
    }

    /// GET `path`; the body and whether it is binary (borsh).
    fn fetch(&self, path: &str, binary: bool) -> Result<(Vec<u8>, bool), LinkError> {
        let remote = |reason: String| LinkError::Remote {
            node: self.url.clone(),
            reason,
        };
        let mut request = self.agent.get(&format!("{}{path}", self.url));
        if binary {
            request = request.header("accept", EXPORT_BINARY_TYPE);
        }
        let response = request.call().map_err(|e| remote(e.to_string()))?;
        let status = response.status().as_u16();
        let is_binary = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(EXPORT_BINARY_TYPE));
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| remote(e.to_string()))?;
        self.bytes
            .fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if body.len() as u64 > MAX_BODY {
            return Err(remote(format!("answer above {MAX_BODY} bytes")));
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(remote(format!("status {status}: {text}")));
        }
        Ok((body, is_binary))
    }

    /// An export answer, asked for in binary (borsh); JSON from a node
    /// that answers JSON.
    fn get<T: DeserializeOwned + BorshDeserialize>(&self, path: &str) -> Result<T, LinkError> {
        let (body, binary) = self.fetch(path, true)?;
        let unparsable = |e: String| LinkError::Remote {
            node: self.url.clone(),
            reason: format!("unparsable answer: {e}"),
        };
        if binary {
            decode_capped(&body, MAX_BODY as usize).map_err(|e| unparsable(e.to_string()))
        } else {
            serde_json::from_slice(&body).map_err(|e| unparsable(e.to_string()))
        }
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, LinkError> {
        let (body, _) = self.fetch(path, false)?;
        serde_json::from_slice(&body).map_err(|e| LinkError::Remote {
            node: self.url.clone(),
            reason: format!("unparsable answer: {e}"),
        })
    }
}

impl Source for HttpSource {
    fn name(&self) -> String {
        self.url.clone()
    }
    fn head(&self, after: Option<u64>) -> Result<ExportHead, LinkError> {
        match after {
            None => self.get("/v1/export/head"),
            Some(h) => self.get(&format!(
                "/v1/export/head?after={h}&wait_ms={}",
                self.head_wait_ms
            )),
        }
    }
    fn changes(&self, from: u64) -> Result<ExportChanges, LinkError> {
        self.get(&format!("/v1/export/changes?from_height={from}"))
    }
    fn changes_wait(&self, from: u64) -> Result<ExportChanges, LinkError> {
        self.get(&format!(
            "/v1/export/changes?from_height={from}&wait_ms={}",
            self.head_wait_ms
        ))
    }
    fn snapshot(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, LinkError> {
        let after = after.map_or(String::new(), |a| format!("&after={}", a.to_hex()));
        self.get(&format!("/v1/export/snapshot?height={height}{after}"))
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, LinkError> {
        let r: EpochsResponse = self.get_json(&format!("/v1/epochs?from={from}"))?;
        r.certificates()
            .map_err(|e| LinkError::BadCertificate(e.to_string()))
    }
}

/// A verified remote head: its block and certificate, and who showed it.
#[derive(Debug, Clone)]
struct Head {
    block: BlockInfo,
    certificate: CommitCertificate,
    source: usize,
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundOutcome {
    /// No remote node gave a verifiable head.
    Unreachable,
    /// Heads verified; nothing newer than the imported block.
    UpToDate,
    /// Imported up to this remote height.
    Imported(u64),
    /// Heads verified but importing failed this round (the reason).
    Refused(&'static str),
    /// Equivocation found: the link is frozen.
    Frozen,
}

/// The import state machine of one link (I/O through [`Source`]s; time as
/// an argument).
pub struct Importer {
    trust: TrustedChain,
    mirror: Mirror,
    sources: Vec<Box<dyn Source>>,
    sample: usize,
    primary: usize,
    /// A delta the primary sent with its head this round.
    prefetched: Option<(usize, ExportChanges)>,
    penalties: Vec<u32>,
    evidence_dir: Option<std::path::PathBuf>,
    /// Refusals by reason, since start.
    pub refusals: std::collections::BTreeMap<&'static str, u64>,
    /// Newest verified remote height.
    pub remote_height: u64,
    last_head_ok_ms: Option<u64>,
    last_advance_ms: Option<u64>,
    started_ms: Option<u64>,
    /// The f witnesses (the sample beyond the lead) are asked for their
    /// heads at most this often while the lead answers (0: every round).
    witness_every_ms: u64,
    last_witness_ms: Option<u64>,
    now_ms: u64,
}

impl Importer {
    /// An importer trusting `trust`, reading `sources`, writing `mirror`.
    pub fn new(trust: TrustedChain, mirror: Mirror, sources: Vec<Box<dyn Source>>) -> Self {
        let n = sources.len();
        Importer {
            trust,
            mirror,
            sample: (n.saturating_sub(1) / 3 + 1).min(n),
            primary: 0,
            prefetched: None,
            penalties: vec![0; n],
            evidence_dir: None,
            refusals: Default::default(),
            remote_height: 0,
            last_head_ok_ms: None,
            last_advance_ms: None,
            started_ms: None,
            witness_every_ms: 0,
            last_witness_ms: None,
            now_ms: 0,
            sources,
        }
    }

    /// Ask the f witnesses for their heads at most every `ms` while the
    /// lead answers deltas (each head is a certificate over the link; one
    /// per change per witness is most of a change's bytes). A withheld head
    /// is then revealed within `ms` plus a round, not within a round.
    pub fn with_witness_interval(mut self, ms: u64) -> Self {
        self.witness_every_ms = ms;
        self
    }

    /// Write evidence files into `dir`.
    pub fn with_evidence_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.evidence_dir = Some(dir);
        self
    }

    /// The mirror.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    fn refuse(&mut self, source: usize, e: &LinkError) {
        *self.refusals.entry(e.reason()).or_default() += 1;
        if let Some(p) = self.penalties.get_mut(source) {
            *p = PENALTY_ROUNDS;
        }
        warn!(
            node = %self.sources[source].name(),
            reason = e.reason(),
            error = %e,
            "remote node refused"
        );
    }

    fn verify(&mut self, source: usize, cert: &CommitCertificate) -> Result<BlockInfo, LinkError> {
        match self.trust.verify(cert) {
            Ok(v) => Ok(v.block().clone()),
            Err(ClientError::UnknownEpoch { .. }) => {
                let changes = self.sources[source].epochs(self.trust.latest_epoch())?;
                self.trust
                    .follow(&changes)
                    .map_err(|e| LinkError::BadCertificate(e.to_string()))?;
                self.trust
                    .verify(cert)
                    .map(|v| v.block().clone())
                    .map_err(|e| LinkError::BadCertificate(e.to_string()))
            }
            Err(e) => Err(LinkError::BadCertificate(e.to_string())),
        }
    }

    /// Ask up to f+1 usable sources for their head, starting at the
    /// primary, in parallel (a head request may be held until news).
    fn heads(&mut self, after: Option<u64>) -> Vec<Head> {
        let n = self.sources.len();
        let mut heads = Vec::new();
        let mut chosen = Vec::new();
        // Witnesses are due when their interval passed, before the first
        // import, or when the lead is not the usual one (it failed).
        let witnesses_due = after.is_none()
            || self.witness_every_ms == 0
            || self
                .last_witness_ms
                .is_none_or(|t| self.now_ms.saturating_sub(t) >= self.witness_every_ms)
            || self.penalties[self.primary % n.max(1)] > 0;
        let sample = if witnesses_due { self.sample } else { 1 };
        if witnesses_due && self.sample > 1 {
            self.last_witness_ms = Some(self.now_ms);
        }
        for step in 0..n {
            if chosen.len() == sample {
                break;
            }
            let i = (self.primary + step) % n;
            if self.penalties[i] > 0 {
                self.penalties[i] -= 1;
                continue;
            }
            chosen.push(i);
        }
        // The first node asked sends its delta with its head (one round trip
        // per change); the other f only their heads, to reveal a withheld one.
        let sources = &self.sources;
        let lead = chosen.first().copied();
        let answers: Vec<(usize, Result<ExportHead, LinkError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chosen
                .iter()
                .map(|&i| {
                    let job = move || match after {
                        Some(h) if Some(i) == lead => match sources[i].changes_wait(h) {
                            Ok(page) => {
                                let head = ExportHead {
                                    height: page.height,
                                    certificate: page.certificate.clone(),
                                };
                                Ok((head, Some(page)))
                            }
                            // No delta from here: still a head (the round
                            // then imports a snapshot).
                            Err(e) if Self::needs_snapshot(&e) => {
                                sources[i].head(None).map(|h| (h, None))
                            }
                            Err(e) => Err(e),
                        },
                        _ => sources[i].head(after).map(|h| (h, None)),
                    };
                    (i, scope.spawn(job))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(LinkError::BadDelta("head request panicked".into()))
                    });
                    (i, r)
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .map(|(i, r)| match r {
            Ok((head, page)) => {
                if let Some(page) = page {
                    self.prefetched = Some((i, page));
                }
                (i, Ok(head))
            }
            Err(e) => (i, Err(e)),
        })
        .collect();
        for (i, answer) in answers {
            let head = answer.and_then(|h| {
                let cert = h
                    .certificate
                    .decode()
                    .map_err(|e| LinkError::BadCertificate(e.to_string()))?;
                let block = self.verify(i, &cert)?;
                Ok(Head {
                    block,
                    certificate: cert,
                    source: i,
                })
            });
            match head {
                Ok(h) => heads.push(h),
                Err(e) => self.refuse(i, &e),
            }
        }
        if heads.is_empty() {
            // Everyone in the sample failed: next round starts elsewhere,
            // with the witnesses asked.
            self.primary = (self.primary + sample) % n.max(1);
            self.last_witness_ms = None;
        }
        heads
    }

    fn conflict(
        &self,
        heads: &[Head],
        record: Option<&ImportRecord>,
    ) -> Option<EquivocationEvidence> {
        let mut seen: Vec<(&BlockInfo, &CommitCertificate)> = Vec::new();
        if let Some(r) = record {
            seen.push((&r.info, &r.certificate));
        }
        for h in heads {
            for (b, c) in &seen {
                if b.height == h.block.height && **b != h.block {
                    return Some(self.evidence((*c).clone(), h.certificate.clone(), vec![]));
                }
            }
            seen.push((&h.block, &h.certificate));
        }
        None
    }

    fn evidence(
        &self,
        first: CommitCertificate,
        second: CommitCertificate,
        chain: Vec<BlockInfo>,
    ) -> EquivocationEvidence {
        EquivocationEvidence {
            chain_id: self.trust.chain_id().to_string(),
            epoch_changes: self.trust.changes().to_vec(),
            first,
            second,
            chain,
        }
    }

    fn freeze(&mut self, evidence: EquivocationEvidence) -> Result<(), LinkError> {
        let height = evidence
            .second
            .ledger_info
            .commit
            .as_ref()
            .map_or(0, |b| b.height);
        let reason = format!("equivocation at remote height {height}");
        if let Some(dir) = &self.evidence_dir {
            std::fs::create_dir_all(dir).map_err(|e| LinkError::Io(e.to_string()))?;
            let path = dir.join(format!("equivocation-{height}.evidence"));
            std::fs::write(&path, encode(&evidence)).map_err(|e| LinkError::Io(e.to_string()))?;
            error!(chain_id = %evidence.chain_id, height, file = %path.display(), "remote datacenter equivocated: link frozen");
        } else {
            error!(chain_id = %evidence.chain_id, height, "remote datacenter equivocated: link frozen");
        }
        *self.refusals.entry("equivocation").or_default() += 1;
        self.mirror.freeze(&reason)
    }

    /// Check a delta page against the imported block and apply it.
    fn apply_page(
        &mut self,
        source: usize,
        record: &ImportRecord,
        page: ExportChanges,
    ) -> Result<u64, LinkError> {
        let from = record.info.height;
        if page.from_height != from || page.height <= from {
            return Err(LinkError::BadChain(format!(
                "asked from {from}, got ({}, {}]",
                page.from_height, page.height
            )));
        }
        let cert = page
            .certificate
            .decode()
            .map_err(|e| LinkError::BadCertificate(e.to_string()))?;
        let block = self.verify(source, &cert)?;
        if block.height != page.height {
            return Err(LinkError::BadChain(
                "certificate is for another height".into(),
            ));
        }
        let expected = page.height - from;
        if page.infos.len() as u64 != expected || page.infos.len() > MAX_EXPORT_INFOS {
            return Err(LinkError::BadChain(format!(
                "{} block infos for {expected} heights",
                page.infos.len()
            )));
        }
        let infos = page
            .infos
            .iter()
            .map(|i| i.decode().map_err(|e| LinkError::BadChain(e.to_string())))
            .collect::<Result<Vec<BlockInfo>, _>>()?;
        if infos.last() != Some(&block) {
            return Err(LinkError::BadChain(
                "last info is not the certified block".into(),
            ));
        }
        for w in infos.windows(2) {
            if w[1].parent_info != w[0].hash() || w[1].height != w[0].height + 1 {
                return Err(LinkError::BadChain(format!(
                    "info at {} does not name its parent",
                    w[1].height
                )));
            }
        }
        // The chain is intact from the certified block down to `from + 1`:
        // if it does not reach the imported block, the remote validators
        // certified two histories.
        if infos[0].parent_info != record.info.hash() || infos[0].height != from + 1 {
            let evidence = self.evidence(record.certificate.clone(), cert, infos);
            self.freeze(evidence)?;
            return Err(LinkError::Equivocation(format!(
                "certified chain to {} does not reach imported block {from}",
                page.height
            )));
        }
        let changes: Vec<LeafChange> = page
            .changes
            .decode()
            .map_err(|e| LinkError::BadDelta(e.to_string()))?;
        if changes.len() > MAX_EXPORT_LEAVES {
            return Err(LinkError::BadDelta(format!(
                "{} leaves in one page",
                changes.len()
            )));
        }
        self.mirror.apply(&changes, &block, &cert)?;
        Ok(block.height)
    }

    /// Whether a remote refusal says the delta cannot be served (the change
    /// index no longer reaches the imported height, or one certified step is
    /// too large): then a snapshot is imported instead.
    fn needs_snapshot(e: &LinkError) -> bool {
        matches!(e, LinkError::Remote { reason, .. }
            if reason.contains("snapshot_required") || reason.contains("delta_too_large"))
    }

    fn first_import(&mut self, head: &Head) -> Result<u64, LinkError> {
        let source = head.source;
        let height = head.block.height;
        let mut leaves: Vec<LeafChange> = Vec::new();
        let mut after = None;
        loop {
            let page = self.sources[source].snapshot(height, after)?;
            if page.height != height {
                return Err(LinkError::BadDelta(
                    "snapshot page of another height".into(),
                ));
            }
            let mut part: Vec<LeafChange> = page
                .leaves
                .decode()
                .map_err(|e| LinkError::BadDelta(e.to_string()))?;
            if part.len() > MAX_EXPORT_LEAVES || leaves.len() + part.len() > MAX_SNAPSHOT_LEAVES {
                return Err(LinkError::BadDelta("snapshot above its bound".into()));
            }
            // Pages must ascend, so a node cannot loop the importer forever.
            if let (Some(a), Some(first)) = (after, part.first()) {
                if first.key_hash <= a {
                    return Err(LinkError::BadDelta("snapshot page does not ascend".into()));
                }
            }
            leaves.append(&mut part);
            match page.next {
                None => break,
                Some(n) if Some(n) > after && leaves.last().map(|l| l.key_hash) == Some(n) => {
                    after = Some(n)
                }
                Some(_) => {
                    return Err(LinkError::BadDelta(
                        "snapshot cursor does not follow its page".into(),
                    ))
                }
            }
        }
        // Over an existing mirror the snapshot becomes a net delta: every
        // leaf the mirror has and the snapshot lacks is deleted. The root
        // check still decides.
        let existing = self
            .mirror
            .leaf_hashes(MAX_SNAPSHOT_LEAVES)?
            .ok_or_else(|| LinkError::Mirror("mirror above its leaf bound".into()))?;
        let present: std::collections::BTreeSet<Digest> =
            leaves.iter().map(|l| l.key_hash).collect();
        for key_hash in existing {
            if !present.contains(&key_hash) {
                leaves.push(LeafChange {
                    key_hash,
                    value: None,
                });
            }
        }
        self.mirror.apply(&leaves, &head.block, &head.certificate)?;
        info!(chain_id = %self.trust.chain_id(), height, leaves = leaves.len(), "imported a snapshot");
        Ok(height)
    }

    /// One round at time `now_ms`.
    pub fn round(&mut self, now_ms: u64) -> RoundOutcome {
        self.started_ms.get_or_insert(now_ms);
        self.now_ms = now_ms;
        let record = match self.mirror.record() {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "mirror unreadable");
                return RoundOutcome::Refused("local");
            }
        };
        if !matches!(self.mirror.frozen(), Ok(None)) {
            return RoundOutcome::Frozen;
        }
        self.prefetched = None;
        let heads = self.heads(record.as_ref().map(|r| r.info.height));
        let Some(best) = heads.iter().max_by_key(|h| h.block.height).cloned() else {
            return RoundOutcome::Unreachable;
        };
        self.last_head_ok_ms = Some(now_ms);
        if best.block.height > self.remote_height || self.last_advance_ms.is_none() {
            self.last_advance_ms = Some(now_ms);
        }
        self.remote_height = self.remote_height.max(best.block.height);
        // After an unfreeze the imported block is not evidence against the
        // heads (it may be the gone side of the fork): a snapshot replaces it.
        let resync = self.mirror.resync_pending().unwrap_or(false);
        let compared = if resync { None } else { record.as_ref() };
        if let Some(evidence) = self.conflict(&heads, compared) {
            if let Err(e) = self.freeze(evidence) {
                error!(error = %e, "could not record the freeze");
            }
            return RoundOutcome::Frozen;
        }
        let record = record.filter(|_| !resync);
        let Some(mut record) = record else {
            return match self.first_import(&best) {
                Ok(h) => RoundOutcome::Imported(h),
                Err(e) => {
                    self.refuse(best.source, &e);
                    RoundOutcome::Refused(e.reason())
                }
            };
        };
        if best.block.height <= record.info.height {
            return RoundOutcome::UpToDate;
        }
        let mut imported = None;
        for _ in 0..MAX_PAGES_PER_ROUND {
            // The lead's delta, when it reaches the best head, saves a request.
            let prefetched = self.prefetched.take().filter(|(_, p)| {
                p.height >= best.block.height && p.from_height == record.info.height
            });
            let (source, page) = match prefetched {
                Some((i, page)) => (i, Ok(page)),
                None => (
                    best.source,
                    self.sources[best.source].changes(record.info.height),
                ),
            };
            let result = page.and_then(|page| self.apply_page(source, &record, page));
            match result {
                Ok(h) => {
                    imported = Some(h);
                    debug!(chain_id = %self.trust.chain_id(), height = h, "imported");
                    match self.mirror.record() {
                        Ok(Some(r)) => record = r,
                        _ => break,
                    }
                    if h >= best.block.height {
                        break;
                    }
                }
                Err(LinkError::Equivocation(_)) => return RoundOutcome::Frozen,
                Err(e) if Self::needs_snapshot(&e) && imported.is_none() => {
                    warn!(chain_id = %self.trust.chain_id(), error = %e, "delta unavailable: importing a snapshot");
                    return match self.first_import(&best) {
                        Ok(h) => RoundOutcome::Imported(h),
                        Err(e) => {
                            self.refuse(best.source, &e);
                            RoundOutcome::Refused(e.reason())
                        }
                    };
                }
                Err(e) => {
                    self.refuse(source, &e);
                    self.primary = (source + 1) % self.sources.len();
                    return imported
                        .map_or(RoundOutcome::Refused(e.reason()), RoundOutcome::Imported);
                }
            }
        }
        imported.map_or(RoundOutcome::UpToDate, RoundOutcome::Imported)
    }

    /// The link's status at `now_ms`.
    pub fn status(&self, datacenter: &str, now_ms: u64, timing: &ImportTiming) -> LinkStatus {
        let record = self.mirror.record().ok().flatten();
        let frozen = self.mirror.frozen().ok().flatten();
        let since = |t: Option<u64>| now_ms.saturating_sub(t.or(self.started_ms).unwrap_or(now_ms));
        let imported_height = record.as_ref().map_or(0, |r| r.info.height);
        let state = match &record {
            _ if frozen.is_some() => "frozen",
            _ if since(self.last_head_ok_ms) > timing.partition_after_ms => "partitioned",
            None => "syncing",
            _ if since(self.last_advance_ms) > timing.stall_after_ms => "remote_stalled",
            _ if self.remote_height > imported_height => "lagging",
            _ => "live",
        };
        LinkStatus {
            datacenter: datacenter.to_string(),
            chain_id: self.trust.chain_id().to_string(),
            state: state.to_string(),
            imported_height,
            imported_timestamp_ms: record.as_ref().map_or(0, |r| r.info.timestamp_ms),
            remote_height: self.remote_height,
            since_progress_ms: since(self.last_advance_ms),
            frozen_reason: frozen,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Least time between two rounds that found nothing new. An honest remote
/// holds an idle head request up to `head_wait`; one that answers at once
/// (its held-poll pool is full, or it lies) must not make the link poll it
/// every `poll` (wave-3 review D2-2: 50 polls a second per remote DC).
const MIN_IDLE_ROUND: Duration = Duration::from_millis(250);

/// The pause after a round that took `elapsed` and ended with `outcome`.
fn pause_after(outcome: &RoundOutcome, elapsed: Duration, timing: &ImportTiming) -> Duration {
    match outcome {
        RoundOutcome::UpToDate | RoundOutcome::Unreachable => {
            timing.poll.max(MIN_IDLE_ROUND.saturating_sub(elapsed))
        }
        _ => timing.poll,
    }
}

/// Run one link's import loop until `shutdown`.
pub(crate) async fn run_link(
    link: Arc<Link>,
    timing: ImportTiming,
    metrics: super::LinkMetrics,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let trust = match TrustedChain::from_network(&link.network) {
        Ok(t) => t,
        Err(e) => {
            error!(datacenter = %link.network.datacenter, error = %e, "link trust anchor unusable");
            return;
        }
    };
    let sources: Vec<Box<dyn Source>> = link
        .network
        .nodes
        .iter()
        .map(|n| {
            Box::new(HttpSource::new(&n.api_url, &timing, link.bytes_in.clone())) as Box<dyn Source>
        })
        .collect();
    let importer = Importer::new(trust, link.mirror.clone(), sources)
        .with_evidence_dir(link.evidence_dir.clone())
        .with_witness_interval(WITNESS_EVERY_MS);
    let importer = Arc::new(std::sync::Mutex::new(importer));
    let datacenter = link.network.datacenter.clone();
    info!(%datacenter, chain_id = %link.network.chain_id, "link import started");
    let mut seen_refusals = std::collections::BTreeMap::new();
    let mut seen_bytes = 0u64;
    loop {
        let (imp, l, dc, m) = (
            importer.clone(),
            link.clone(),
            datacenter.clone(),
            metrics.clone(),
        );
        let mut last = (seen_refusals.clone(), seen_bytes);
        let started = std::time::Instant::now();
        let round = tokio::task::spawn_blocking(move || {
            let mut imp = imp.lock().expect("importer lock");
            let outcome = imp.round(now_ms());
            let now = now_ms();
            let status = imp.status(&dc, now, &timing);
            let delta: std::collections::BTreeMap<&'static str, u64> = imp
                .refusals
                .iter()
                .map(|(k, v)| (*k, v - last.0.get(k).copied().unwrap_or(0)))
                .filter(|(_, d)| *d > 0)
                .collect();
            let bytes = l.bytes_in.load(std::sync::atomic::Ordering::Relaxed);
            let imported = match outcome {
                RoundOutcome::Imported(h) => Some(h),
                _ => None,
            };
            m.observe(&dc, &status, now, imported, bytes - last.1, &delta);
            last = (imp.refusals.clone(), bytes);
            l.imported.send_if_modified(|h| {
                let changed = *h != status.imported_height;
                *h = status.imported_height;
                changed
            });
            *l.status.lock().expect("link status lock") = status;
            (outcome, last)
        });
        let mut pause = timing.poll;
        tokio::select! {
            r = round => match r {
                Ok((outcome, (refusals, bytes))) => {
                    seen_refusals = refusals;
                    seen_bytes = bytes;
                    pause = pause_after(&outcome, started.elapsed(), &timing);
                }
                Err(e) => error!(%datacenter, error = %e, "import round failed"),
            },
            _ = shutdown.wait() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wave-3 review D2-2: a remote that answers an idle head request at
    /// once (its held-poll pool full, or lying) is polled at most every
    /// [`MIN_IDLE_ROUND`], not every `poll` (20 ms); a round that imported
    /// something goes on at once, and an honest held round (2 s) adds nothing.
    #[test]
    fn idle_rounds_answered_at_once_are_paced() {
        let t = ImportTiming::default();
        let quick = Duration::from_millis(3);
        assert_eq!(
            pause_after(&RoundOutcome::UpToDate, quick, &t),
            MIN_IDLE_ROUND - quick
        );
        assert_eq!(
            pause_after(&RoundOutcome::Unreachable, quick, &t),
            MIN_IDLE_ROUND - quick
        );
        assert_eq!(pause_after(&RoundOutcome::Imported(7), quick, &t), t.poll);
        assert_eq!(
            pause_after(&RoundOutcome::UpToDate, t.head_wait, &t),
            t.poll
        );
    }
}
