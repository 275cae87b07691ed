//! Snapshot catch-up (DESIGN.md "Leases at fleet scale": a new or wiped
//! node catches up from a certified snapshot, not by replaying genesis).
//!
//! At start, before the database is opened, a node with a network file:
//!
//! 1. finishes or drops an install an earlier run left ([`complete_pending`]);
//! 2. asks every other node of the network file for its newest commit
//!    certificate (`/v1/export/head`) and verifies each against the trust
//!    chain followed from the genesis set ([`TrustedChain`], the cross-DC
//!    importer's verifier): at least f+1 must verify, so one honest answer
//!    shows a withheld head;
//! 3. decides: catch up from a snapshot when f+1 of the peers with a newer
//!    head answer that the first height this node lacks is pruned (410: at
//!    least one honest peer no longer serves it; one peer's word decides
//!    nothing either way, review S2), or when this node is empty and the
//!    newest verified head is more than `storage.catch_up_min_gap` heights
//!    ahead; otherwise it syncs blocks as before;
//! 4. asks the peer with the newest head to pin that height
//!    (`/v1/snapshot/pin`, [`pin`]: it is not pruned there while paged) and
//!    takes the committed log tail ending at the certified block from it
//!    (`/v1/audit/blocks/H`, checked by hashes from the certified block
//!    down, every entry's QC verified against its epoch's set) and the
//!    leaves at `H` page by page (`/v1/export/snapshot`, the pages the
//!    cross-DC importer reads), each page with a range proof of its last
//!    key (`/v1/snapshot/proof`) checked against the certified state root
//!    before it is kept ([`install::Installer`]). A bad chunk, tail or
//!    certificate drops the attempt, and so does a peer that serves pages
//!    far below the export's page size or too slowly ([`Floor`]); the next
//!    peer is tried with its own head;
//! 5. installs the whole state atomically ([`install`]), and starts on it
//!    like a restart: the root is the certified block with the QC that
//!    committed it, the blocks after it come through the normal commit
//!    sync, and below the snapshot the node answers like a pruned node.
//!
//! Bounds: pages at most `MAX_EXPORT_LEAVES` leaves (the export's bound),
//! at most [`MAX_SNAPSHOT_LEAVES`] leaves in all, a committed tail of at most
//! [`TAIL`] blocks, answers at most [`MAX_BODY`] bytes, one attempt per peer,
//! each attempt within [`Floor`]'s time.

pub mod install;
pub mod pin;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use jmt::proof::SparseMerkleRangeProof;
use palisade_client::{ClientError, TrustedChain};
use palisade_consensus::hotstuff::CommittedBlock;
use palisade_crypto::api::EpochsResponse;
use palisade_crypto::dc::{
    ExportHead, ExportSnapshot, LeafChange, MAX_EXPORT_BYTES, MAX_EXPORT_LEAVES,
};
use palisade_crypto::{BlockInfo, CommitCertificate, Digest, Hex, JmtHasher};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

pub use install::{complete_pending, CrashPoint, Installer, SnapshotRoot};

/// Largest answer read from a peer.
pub const MAX_BODY: u64 = 16 << 20;
/// Most leaves a snapshot may hold.
pub const MAX_SNAPSHOT_LEAVES: usize = 16 << 20;
/// Committed blocks taken below and at the snapshot (leader reputation
/// looks at the last 20; a restart recovers the last 64).
pub const TAIL: u64 = 64;

/// Why a catch-up step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatchUpError {
    /// A peer could not be reached or answered badly.
    #[error("peer {node}: {reason}")]
    Remote {
        /// Its URL.
        node: String,
        /// What happened.
        reason: String,
    },
    /// A certificate did not verify against the trust chain.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The committed tail does not chain to the certified block.
    #[error("bad committed tail: {0}")]
    BadTail(String),
    /// A chunk of leaves was refused (order, bound, or proof).
    #[error("bad chunk: {0}")]
    BadChunk(String),
    /// Fewer than f+1 peers showed a verifiable head.
    #[error("{got} verified heads, {need} needed")]
    TooFewHeads {
        /// Verified.
        got: usize,
        /// Needed (f+1).
        need: usize,
    },
    /// The peer served too slowly (below [`Floor`]).
    #[error("too slow: {0}")]
    TooSlow(String),
    /// Every peer was tried.
    #[error("no peer could serve a snapshot")]
    Exhausted,
    /// Local storage or files.
    #[error("local: {0}")]
    Local(String),
    /// A test's crash point was reached.
    #[error("crashed on purpose ({0})")]
    Crashed(&'static str),
}

impl From<crate::error::StorageError> for CatchUpError {
    fn from(e: crate::error::StorageError) -> Self {
        CatchUpError::Local(e.to_string())
    }
}

/// A range proof as served by `/v1/snapshot/proof`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotProof {
    /// The height (tree version) proven.
    pub height: u64,
    /// The rightmost key of the range.
    pub key_hash: Digest,
    /// jmt's range proof (right siblings), borsh.
    pub proof: Hex<SparseMerkleRangeProof<JmtHasher>>,
}

/// What a peer answers for a committed height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The log entry.
    Block(Box<CommittedBlock>),
    /// Below the peer's pruned mark (410).
    Pruned,
    /// Not committed there (404).
    Missing,
}

/// One peer, as catch-up reads it.
pub trait SnapshotSource: Send + Sync {
    /// Its name in logs.
    fn name(&self) -> String;
    /// Its newest certificate (`/v1/export/head`).
    fn head(&self) -> Result<ExportHead, CatchUpError>;
    /// One page of leaves (`/v1/export/snapshot`).
    fn page(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, CatchUpError>;
    /// The range proof of `key` at `height` (`/v1/snapshot/proof`).
    fn proof(&self, height: u64, key: Digest) -> Result<SnapshotProof, CatchUpError>;
    /// The committed log entry at `height` (`/v1/audit/blocks/H`).
    fn committed(&self, height: u64) -> Result<Committed, CatchUpError>;
    /// Epoch-change certificates from `from` (`/v1/epochs`).
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, CatchUpError>;
    /// Ask it to keep `height` from its pruner while it is paged
    /// (`/v1/snapshot/pin`).
    fn pin(&self, height: u64) -> Result<(), CatchUpError>;
    /// The consensus round it reports being in (`/v1/status`; its word,
    /// unverified). `None` when it does not say.
    fn round(&self) -> Option<u64> {
        None
    }
}

/// A peer over HTTP.
pub struct HttpSnapshotSource {
    url: String,
    agent: ureq::Agent,
}

impl HttpSnapshotSource {
    /// A peer at `url`, each request bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .build()
            .into();
        HttpSnapshotSource {
            url: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn remote(&self, reason: String) -> CatchUpError {
        CatchUpError::Remote {
            node: self.url.clone(),
            reason,
        }
    }

    fn get_raw(&self, path: &str) -> Result<(u16, Vec<u8>), CatchUpError> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.url))
            .call()
            .map_err(|e| self.remote(e.to_string()))?;
        self.read(response)
    }

    fn read(
        &self,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<(u16, Vec<u8>), CatchUpError> {
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.remote(e.to_string()))?;
        if body.len() as u64 > MAX_BODY {
            return Err(self.remote(format!("answer above {MAX_BODY} bytes")));
        }
        Ok((status, body))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CatchUpError> {
        let (status, body) = self.get_raw(path)?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(self.remote(format!("status {status}: {text}")));
        }
        serde_json::from_slice(&body).map_err(|e| self.remote(format!("unparsable answer: {e}")))
    }
}

#[derive(Deserialize)]
struct AuditBlock {
    committed: Hex<CommittedBlock>,
}

impl SnapshotSource for HttpSnapshotSource {
    fn name(&self) -> String {
        self.url.clone()
    }
    fn head(&self) -> Result<ExportHead, CatchUpError> {
        self.get("/v1/export/head")
    }
    fn page(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, CatchUpError> {
        let after = after.map_or(String::new(), |a| format!("&after={}", a.to_hex()));
        self.get(&format!("/v1/export/snapshot?height={height}{after}"))
    }
    fn proof(&self, height: u64, key: Digest) -> Result<SnapshotProof, CatchUpError> {
        self.get(&format!(
            "/v1/snapshot/proof?height={height}&key={}",
            key.to_hex()
        ))
    }
    fn committed(&self, height: u64) -> Result<Committed, CatchUpError> {
        let (status, body) = self.get_raw(&format!("/v1/audit/blocks/{height}"))?;
        match status {
            410 => Ok(Committed::Pruned),
            404 => Ok(Committed::Missing),
            200 => {
                let a: AuditBlock = serde_json::from_slice(&body)
                    .map_err(|e| self.remote(format!("unparsable answer: {e}")))?;
                let c = a
                    .committed
                    .decode()
                    .map_err(|e| self.remote(format!("undecodable block: {e}")))?;
                Ok(Committed::Block(Box::new(c)))
            }
            s => Err(self.remote(format!("status {s}"))),
        }
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, CatchUpError> {
        let r: EpochsResponse = self.get(&format!("/v1/epochs?from={from}"))?;
        r.certificates()
            .map_err(|e| CatchUpError::BadCertificate(e.to_string()))
    }

    fn pin(&self, height: u64) -> Result<(), CatchUpError> {
        let response = self
            .agent
            .post(&format!("{}/v1/snapshot/pin?height={height}", self.url))
            .send_empty()
            .map_err(|e| self.remote(e.to_string()))?;
        match self.read(response)? {
            (200..=299, _) => Ok(()),
            (status, body) => Err(self.remote(format!(
                "pin: status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }

    fn round(&self) -> Option<u64> {
        self.get::<palisade_crypto::api::StatusResponse>("/v1/status")
            .ok()
            .map(|s| s.round)
    }
}

/// What this node has, as catch-up sees it.
#[derive(Debug, Clone, Default)]
pub struct Local {
    /// Committed height (0 = empty or genesis only).
    pub height: u64,
    /// The safety record to carry over (votes already cast stay cast).
    pub safety: Option<Vec<u8>>,
}

/// The slowest a peer may serve a snapshot attempt (review S2: a peer
/// dripping honest pages, each request just inside its timeout, held a
/// catching-up node for days): an attempt that has run longer than `grace`
/// plus the bytes of leaves received so far at `bytes_per_sec` is dropped
/// and the next peer tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    /// Time allowed whatever was received (heads, tail, first pages).
    pub grace: Duration,
    /// The throughput below which the peer is left.
    pub bytes_per_sec: u64,
}

impl Default for Floor {
    /// 30 s, then 128 KiB/s (the 100k-instance state, 30 pages of up to
    /// 2 MiB, installed in 8.2 s on a loaded machine here).
    fn default() -> Self {
        Floor {
            grace: Duration::from_secs(30),
            bytes_per_sec: 128 << 10,
        }
    }
}

/// How catch-up is asked to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchUpOptions {
    /// Catch up from a snapshot when empty and the head is more than this
    /// many heights ahead (0 = only when the peers pruned what is needed).
    pub min_gap: u64,
    /// Where to stop as if crashed (tests).
    pub crash: CrashPoint,
    /// The slowest a peer may serve.
    pub floor: Floor,
}

/// The clock of one attempt against its [`Floor`].
struct Pace {
    started: Instant,
    bytes: u64,
    floor: Floor,
}

impl Pace {
    fn new(floor: Floor) -> Self {
        Pace {
            started: Instant::now(),
            bytes: 0,
            floor,
        }
    }

    /// Count `bytes` more received and check the attempt is within time.
    fn received(&mut self, bytes: u64) -> Result<(), CatchUpError> {
        self.bytes = self.bytes.saturating_add(bytes);
        let earned =
            Duration::from_secs_f64(self.bytes as f64 / self.floor.bytes_per_sec.max(1) as f64);
        let elapsed = self.started.elapsed();
        if elapsed > self.floor.grace.saturating_add(earned) {
            return Err(CatchUpError::TooSlow(format!(
                "{} bytes in {} ms",
                self.bytes,
                elapsed.as_millis()
            )));
        }
        Ok(())
    }
}

/// What a catch-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtUp {
    /// The snapshot height installed.
    pub height: u64,
    /// Leaves installed.
    pub leaves: usize,
    /// Chunks installed.
    pub chunks: usize,
    /// Peers whose snapshot was refused (bad chunk, tail, or unreachable).
    pub refused: Vec<String>,
    /// Wall time of the whole catch-up, ms.
    pub elapsed_ms: u64,
}

/// A verified head and who showed it.
struct Head {
    info: BlockInfo,
    certificate: CommitCertificate,
    source: usize,
}

fn verify(
    trust: &mut TrustedChain,
    source: &dyn SnapshotSource,
    cert: &CommitCertificate,
) -> Result<BlockInfo, CatchUpError> {
    match trust.verify(cert) {
        Ok(v) => Ok(v.block().clone()),
        Err(ClientError::UnknownEpoch { .. }) => {
            let changes = source.epochs(trust.latest_epoch())?;
            trust
                .follow(&changes)
                .map_err(|e| CatchUpError::BadCertificate(e.to_string()))?;
            trust
                .verify(cert)
                .map(|v| v.block().clone())
                .map_err(|e| CatchUpError::BadCertificate(e.to_string()))
        }
        Err(e) => Err(CatchUpError::BadCertificate(e.to_string())),
    }
}

/// Every source's head, asked in parallel, verified in order.
fn heads(trust: &mut TrustedChain, sources: &[Box<dyn SnapshotSource>]) -> Vec<Head> {
    let answers: Vec<Result<ExportHead, CatchUpError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|s| scope.spawn(move || s.head()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CatchUpError::Local("head request panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let head = answer.and_then(|h| {
            let cert = h
                .certificate
                .decode()
                .map_err(|e| CatchUpError::BadCertificate(e.to_string()))?;
            let info = verify(trust, sources[i].as_ref(), &cert)?;
            Ok(Head {
                info,
                certificate: cert,
                source: i,
            })
        });
        match head {
            Ok(h) => out.push(h),
            // A peer not up (yet) is ordinary at a testnet's first start.
            Err(e @ CatchUpError::Remote { .. }) => {
                debug!(peer = %sources[i].name(), error = %e, "no head")
            }
            Err(e) => warn!(peer = %sources[i].name(), error = %e, "no usable head"),
        }
    }
    out
}

/// `shown`'s peer's head now, verified, if newer than `shown`.
fn current_head(
    trust: &mut TrustedChain,
    source: &dyn SnapshotSource,
    shown: &Head,
) -> Option<Head> {
    let answer = source.head().ok()?;
    let certificate = answer.certificate.decode().ok()?;
    let info = verify(trust, source, &certificate).ok()?;
    (info.height > shown.info.height).then_some(Head {
        info,
        certificate,
        source: shown.source,
    })
}

/// The committed log tail ending at the certified `info`, checked from it
/// downwards by block ids and info hashes.
fn tail(
    trust: &mut TrustedChain,
    source: &dyn SnapshotSource,
    info: &BlockInfo,
    pace: &mut Pace,
) -> Result<Vec<CommittedBlock>, CatchUpError> {
    let bad = |r: String| CatchUpError::BadTail(r);
    let mut out: Vec<CommittedBlock> = Vec::new();
    let mut expect = info.clone();
    let mut next = source.committed(info.height)?;
    loop {
        let c = match next {
            Committed::Block(c) => *c,
            other if out.is_empty() => {
                return Err(bad(format!(
                    "no log entry at the certified height: {other:?}"
                )))
            }
            _ => break,
        };
        // The stored info is the block's own (its id and claimed roots).
        if c.info != expect || c.block.info() != expect {
            return Err(bad(format!(
                "entry at {} is not the chained block",
                expect.height
            )));
        }
        let commits = c.commit_qc.commit_info().map(|i| i.height);
        if commits.is_none_or(|h| h < expect.height || h > info.height) {
            return Err(bad(format!(
                "entry at {} has a QC committing {commits:?}",
                expect.height
            )));
        }
        if out.is_empty() {
            // The QC the root restarts with: it must verify.
            let cert = c
                .commit_qc
                .commit_certificate()
                .ok_or_else(|| bad("root QC commits nothing".into()))?;
            let named = verify(trust, source, &cert)?;
            if named != *info {
                return Err(bad("the root's QC does not commit the root".into()));
            }
        }
        // Every entry's QC is stored and served again as this node's word
        // (`/v1/audit/blocks`, commit sync): it must be a quorum of its
        // epoch's set, and what it commits one of the blocks chained above
        // (review S4b).
        verify_tail_qc(trust, &c, info, &out)?;
        let parent = c.info.parent_info;
        let height = c.info.height;
        out.push(c);
        if height <= 1 || out.len() as u64 >= TAIL {
            break;
        }
        // The parent's info must hash to what the child names.
        next = source.committed(height - 1)?;
        // Blocks count toward the floor like leaves (a tail of full blocks
        // on a slow link is honest).
        let got = match &next {
            Committed::Block(b) => palisade_crypto::encode(b.as_ref()).len() as u64,
            _ => 0,
        };
        pace.received(got)?;
        if let Committed::Block(p) = &next {
            if p.info.hash() != parent || p.info.height + 1 != height {
                return Err(bad(format!("entry at {} does not chain", height - 1)));
            }
            expect = p.info.clone();
        }
    }
    out.reverse();
    Ok(out)
}

/// The QC of tail entry `c`, against the trusted set of its epoch, and what
/// it commits against the chain checked so far (`above`: the entries from
/// `root` down, newest first).
fn verify_tail_qc(
    trust: &TrustedChain,
    c: &CommittedBlock,
    root: &BlockInfo,
    above: &[CommittedBlock],
) -> Result<(), CatchUpError> {
    let bad = |r: String| CatchUpError::BadTail(r);
    let qc = &c.commit_qc;
    let set = trust.validators(qc.epoch()).ok_or_else(|| {
        bad(format!(
            "entry at {}: QC of an epoch not followed ({})",
            c.info.height,
            qc.epoch()
        ))
    })?;
    let genesis = trust.genesis_hash().unwrap_or(qc.ledger_info.genesis_hash);
    qc.verify(trust.chain_id(), genesis, set).map_err(|e| {
        bad(format!(
            "entry at {}: QC does not verify: {e}",
            c.info.height
        ))
    })?;
    let commits = qc
        .commit_info()
        .ok_or_else(|| bad(format!("entry at {}: QC commits nothing", c.info.height)))?;
    // `above[i]` is at `root.height - i`; the entry itself is next.
    let chained = match root.height.checked_sub(commits.height) {
        Some(i) if (i as usize) < above.len() => &above[i as usize].info,
        Some(i) if i as usize == above.len() => &c.info,
        _ => {
            return Err(bad(format!(
                "entry at {}: QC commits height {} outside the tail",
                c.info.height, commits.height
            )))
        }
    };
    if commits != chained {
        return Err(bad(format!(
            "entry at {}: QC commits another block at {}",
            c.info.height, commits.height
        )));
    }
    Ok(())
}

/// Install the snapshot a peer serves at its head.
fn install_from(
    data_dir: &Path,
    source: &dyn SnapshotSource,
    head: &Head,
    crash: CrashPoint,
    pace: &mut Pace,
) -> Result<Installer, CatchUpError> {
    let height = head.info.height;
    let mut installer = Installer::begin(data_dir, height, head.info.state_root, crash)?;
    let mut after = None;
    // The bytes of the previous page when it was short (see `MIN_PAGE_*`).
    let mut short: Option<usize> = None;
    loop {
        let page = source.page(height, after)?;
        if page.height != height {
            return Err(CatchUpError::BadChunk("a page of another height".into()));
        }
        let leaves: Vec<LeafChange> = page
            .leaves
            .decode()
            .map_err(|e| CatchUpError::BadChunk(e.to_string()))?;
        if leaves.len() > MAX_EXPORT_LEAVES || installer.leaves + leaves.len() > MAX_SNAPSHOT_LEAVES
        {
            return Err(CatchUpError::BadChunk("above the snapshot bounds".into()));
        }
        let last = leaves
            .last()
            .map(|l| l.key_hash)
            .ok_or_else(|| CatchUpError::BadChunk("an empty page".into()))?;
        let bytes: usize = leaves.iter().map(leaf_bytes).sum();
        if let Some(before) = short {
            // The export ends a page early only when the next leaf would not
            // fit its byte bound: that leaf opens this page.
            if before + leaf_bytes(&leaves[0]) < MIN_PAGE_BYTES {
                return Err(CatchUpError::BadChunk(format!(
                    "a page of {before} bytes ended although the next leaf fitted"
                )));
            }
        }
        short = (page.next.is_some() && leaves.len() < MIN_PAGE_LEAVES && bytes < MIN_PAGE_BYTES)
            .then_some(bytes);
        let proof = source.proof(height, last)?;
        if proof.height != height || proof.key_hash != last {
            return Err(CatchUpError::BadChunk("a proof of another key".into()));
        }
        let proof = proof
            .proof
            .decode()
            .map_err(|e| CatchUpError::BadChunk(e.to_string()))?;
        installer.add_chunk(leaves, proof)?;
        pace.received(bytes as u64)?;
        match page.next {
            None => break,
            Some(n) if n == last => after = Some(n),
            Some(_) => {
                return Err(CatchUpError::BadChunk(
                    "the cursor does not follow its page".into(),
                ))
            }
        }
    }
    Ok(installer)
}

/// A page the export ends before its last leaf holds `MAX_EXPORT_LEAVES`
/// leaves, or stops because the next leaf would pass `MAX_EXPORT_BYTES`
/// (`links::export_snapshot`). A page far below both (half, leaving room
/// for a different byte count) whose next leaf would have fitted is a peer
/// dripping the state to hold this node (review S2): it is left.
const MIN_PAGE_LEAVES: usize = MAX_EXPORT_LEAVES / 2;
/// See [`MIN_PAGE_LEAVES`].
const MIN_PAGE_BYTES: usize = MAX_EXPORT_BYTES / 2;

/// A leaf's size as the export counts it.
fn leaf_bytes(l: &LeafChange) -> usize {
    36 + l.value.as_ref().map_or(0, Vec::len)
}

/// How many of the peers whose verified head is at or above `height` answer that
/// `height` is pruned (410), asked in parallel.
fn pruned_by(sources: &[Box<dyn SnapshotSource>], heads: &[Head], height: u64) -> usize {
    std::thread::scope(|scope| {
        let asks: Vec<_> = heads
            .iter()
            .filter(|h| h.info.height >= height)
            .map(|h| {
                let source = sources[h.source].as_ref();
                scope.spawn(move || matches!(source.committed(height), Ok(Committed::Pruned)))
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join())
            .filter(|a| matches!(a, Ok(true)))
            .count()
    })
}

/// The rounds a validator without its safety record must sit out.
const REJOIN_MARGIN: u64 = 3;

/// Most rounds the peers' reported round may lead the certified head's
/// round by, in the rejoin guard (review-3 SNAP-3: when the f+1 count is
/// off, e.g. network.json lists more Byzantine entries than f, reports of
/// round u64::MAX made a wiped validator never vote or time out again).
/// Rounds advance at most about once per 10 ms under load and a round
/// timeout idle; a day of rounds is far beyond what honest peers report.
const MAX_ROUND_LEAD: u64 = 24 * 3600 * 100;

/// The safety record of a node that installs a snapshot without its own
/// (a wiped data directory): it may have voted, before the wipe, in any
/// round up to the one the network was in, and a second vote in such a
/// round, for another block, is equivocation (review S1: one Byzantine
/// leader plus one wiped validator would make two QCs in one round). So it
/// starts as if it had voted and timed out in every round up to the
/// current one plus [`REJOIN_MARGIN`]: the highest of the certified head's
/// round and the (f+1)-th highest round the peers report (at least one of
/// the f+1 highest is honest, so f liars cannot push it above every honest
/// node's round, nor, reporting low, below the f+1 highest honest ones).
/// A node that never voted with its key loses only those few rounds. The
/// record is for the newest epoch the trust chain reached (the one the
/// node starts in; an older one would be reset at start).
fn rejoin_safety(
    epoch: u64,
    head: &BlockInfo,
    sources: &[Box<dyn SnapshotSource>],
    f_plus_one: usize,
) -> palisade_consensus::hotstuff::SafetyState {
    let mut rounds: Vec<u64> = sources.iter().filter_map(|s| s.round()).collect();
    rounds.sort_unstable_by(|a, b| b.cmp(a));
    let reported = rounds
        .get(f_plus_one.saturating_sub(1))
        .copied()
        .unwrap_or(0)
        .min(head.round.saturating_add(MAX_ROUND_LEAD));
    let guard = head.round.max(reported).saturating_add(REJOIN_MARGIN);
    let mut safety = palisade_consensus::hotstuff::SafetyState::new(epoch);
    safety.last_voted_round = guard;
    safety.highest_timeout_round = guard;
    warn!(
        guard,
        head_round = head.round,
        reported,
        "installed without a safety record: no vote or timeout up to the guard round"
    );
    safety
}

/// Catch up from a snapshot if needed (see the module doc). `Ok(None)`:
/// not needed; this node syncs blocks as before.
pub fn catch_up(
    data_dir: &Path,
    trust: &mut TrustedChain,
    sources: &[Box<dyn SnapshotSource>],
    local: &Local,
    options: CatchUpOptions,
) -> Result<Option<CaughtUp>, CatchUpError> {
    let started = Instant::now();
    let nodes = sources.len() + 1;
    let need = (nodes - 1) / 3 + 1;
    let mut heads = heads(trust, sources);
    if heads.len() < need {
        return Err(CatchUpError::TooFewHeads {
            got: heads.len(),
            need,
        });
    }
    heads.sort_by_key(|h| std::cmp::Reverse(h.info.height));
    let best = &heads[0];
    if best.info.height <= local.height {
        return Ok(None);
    }
    // f+1 peers that pruned the next height: at least one honest one, so
    // the honest peers are dropping it; fewer, and an honest peer still
    // serves it (or will once it reaches it) through block sync. One peer's
    // 410 (or 404) alone decides nothing (review S2).
    let pruned_count = pruned_by(sources, &heads, local.height + 1);
    let pruned = pruned_count >= need;
    let far = local.height == 0
        && options.min_gap > 0
        && best.info.height > local.height.saturating_add(options.min_gap);
    if !pruned && !far {
        return Ok(None);
    }
    info!(
        local = local.height,
        head = best.info.height,
        pruned,
        pruned_count,
        "catching up from a snapshot"
    );
    let mut refused = Vec::new();
    for (i, shown) in heads.iter().enumerate() {
        let source = sources[shown.source].as_ref();
        // After a failed attempt, possibly a long one, the head this peer
        // showed at the start may have left its window: ask again and take
        // the newer one (review S3).
        let fresh = (i > 0)
            .then(|| current_head(trust, source, shown))
            .flatten();
        let head = fresh.as_ref().unwrap_or(shown);
        if head.info.height <= local.height {
            // Never install a state older than the one this node has
            // (review-3 SNAP-8: a lower head later in the list was tried).
            continue;
        }
        // Kept from its pruner while paged; a peer that refuses still
        // serves while the height is in its window.
        if let Err(e) = source.pin(head.info.height) {
            debug!(peer = %source.name(), error = %e, "no pin");
        }
        let mut pace = Pace::new(options.floor);
        let attempt = tail(trust, source, &head.info, &mut pace).and_then(|committed| {
            let installer = install_from(data_dir, source, head, options.crash, &mut pace)?;
            let root = SnapshotRoot {
                info: head.info.clone(),
                certificate: head.certificate.clone(),
                committed,
                epoch_changes: trust.changes().to_vec(),
            };
            let (leaves, chunks) = (installer.leaves, installer.chunks);
            let safety = match &local.safety {
                Some(kept) => Some(kept.clone()),
                None => Some(palisade_crypto::encode(&rejoin_safety(
                    trust.latest_epoch(),
                    &head.info,
                    sources,
                    need,
                ))),
            };
            installer.finish(&root, safety)?;
            Ok((leaves, chunks))
        });
        match attempt {
            Ok((leaves, chunks)) => {
                let done = CaughtUp {
                    height: head.info.height,
                    leaves,
                    chunks,
                    refused,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                };
                info!(
                    height = done.height,
                    leaves,
                    chunks,
                    elapsed_ms = done.elapsed_ms,
                    "installed a certified snapshot"
                );
                return Ok(Some(done));
            }
            Err(e @ (CatchUpError::Crashed(_) | CatchUpError::Local(_))) => return Err(e),
            Err(e) => {
                warn!(peer = %source.name(), error = %e, "snapshot refused; trying the next peer");
                refused.push(source.name());
            }
        }
    }
    Err(CatchUpError::Exhausted)
}

/// Read what the database at `data_dir/db` holds (closing it again).
pub fn local_state(data_dir: &Path) -> Result<Local, CatchUpError> {
    let db = data_dir.join(install::DB);
    if !db.exists() {
        return Ok(Local::default());
    }
    let store = crate::storage::NodeStore::open_rocks(&db)?;
    Ok(Local {
        height: store.committed_height()?,
        safety: store.safety("safety")?,
    })
}

/// The node's start-up step: finish a pending install, then catch up from
/// the network file's other nodes when needed. Failures to reach peers are
/// logged and the node starts on what it has.
pub(crate) fn at_start(
    config: &crate::NodeConfig,
    me: &palisade_crypto::PublicKey,
) -> Result<Option<CaughtUp>, CatchUpError> {
    complete_pending(&config.data_dir)?;
    let Some(path) = &config.network_file else {
        return Ok(None);
    };
    if !config.storage.snapshot_catch_up {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| CatchUpError::Local(format!("{}: {e}", path.display())))?;
    let network = palisade_crypto::NetworkFile::from_json(&text).map_err(CatchUpError::Local)?;
    let mut trust = TrustedChain::from_network(&network)
        .map_err(|e| CatchUpError::Local(format!("trust anchor: {e}")))?;
    let sources = http_sources(&network, me);
    if sources.is_empty() {
        return Ok(None);
    }
    let local = local_state(&config.data_dir)?;
    let options = CatchUpOptions {
        min_gap: config.storage.catch_up_min_gap,
        crash: CrashPoint::Never,
        floor: Floor::default(),
    };
    match catch_up(&config.data_dir, &mut trust, &sources, &local, options) {
        Ok(done) => Ok(done),
        Err(e @ CatchUpError::Local(_)) => Err(e),
        Err(e) => {
            info!(error = %e, "no snapshot catch-up now; starting on local state");
            Ok(None)
        }
    }
}

/// Time between two checks of [`watch_behind`].
const BEHIND_CHECK: Duration = Duration::from_secs(15);

/// Whether f+1 peers with verified heads above `height` answer that
/// `height + 1` is pruned (one honest peer among them no longer holds it).
fn peers_pruned_past(
    network: &palisade_crypto::NetworkFile,
    me: &palisade_crypto::PublicKey,
    height: u64,
) -> bool {
    let Ok(mut trust) = TrustedChain::from_network(network) else {
        return false;
    };
    let sources = http_sources(network, me);
    // n = sources + this node; f = (n - 1) / 3.
    let need = sources.len() / 3 + 1;
    let heads = heads(&mut trust, &sources);
    pruned_by(&sources, &heads, height + 1) >= need
}

fn http_sources(
    network: &palisade_crypto::NetworkFile,
    me: &palisade_crypto::PublicKey,
) -> Vec<Box<dyn SnapshotSource>> {
    network
        .nodes
        .iter()
        .filter(|n| n.public_key != *me)
        .map(|n| {
            Box::new(HttpSnapshotSource::new(&n.api_url, Duration::from_secs(10)))
                as Box<dyn SnapshotSource>
        })
        .collect()
}

/// While running: when the committed height has not moved for a check
/// interval and f+1 peers answer that the next height is pruned, this node
/// cannot sync blocks any more; say so (error log) and raise `behind`, on
/// which `palisade-node run` restarts the node, whose start catches up from
/// a snapshot. Until shutdown.
pub(crate) async fn watch_behind(
    store: crate::storage::NodeStore,
    config: crate::NodeConfig,
    me: palisade_crypto::PublicKey,
    behind: std::sync::Arc<tokio::sync::Notify>,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let Some(path) = config.network_file.clone() else {
        return;
    };
    let mut last = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(BEHIND_CHECK) => {}
        }
        let Ok(height) = store.committed_height() else {
            continue;
        };
        if last != Some(height) {
            last = Some(height);
            continue;
        }
        let path = path.clone();
        let check = tokio::task::spawn_blocking(move || {
            let text = std::fs::read_to_string(&path).ok()?;
            let network = palisade_crypto::NetworkFile::from_json(&text).ok()?;
            Some(peers_pruned_past(&network, &me, height))
        })
        .await;
        if let Ok(Some(true)) = check {
            tracing::error!(
                height,
                "this node is behind its peers' retention window and cannot sync blocks; restart to catch up from a snapshot"
            );
            behind.notify_one();
            return;
        }
    }
}

/// The range proof of `key` at `height` from `store` (what
/// `/v1/snapshot/proof` serves).
pub fn prove_range(
    store: &crate::storage::NodeStore,
    height: u64,
    key: Digest,
) -> Result<SparseMerkleRangeProof<JmtHasher>, String> {
    let tree = jmt::JellyfishMerkleTree::<_, JmtHasher>::new(store.tree());
    tree.get_range_proof(jmt::KeyHash(key.0), height)
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that only says which round it is in.
    struct Says(Option<u64>);

    impl SnapshotSource for Says {
        fn name(&self) -> String {
            "says".into()
        }
        fn head(&self) -> Result<ExportHead, CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn page(&self, _: u64, _: Option<Digest>) -> Result<ExportSnapshot, CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn proof(&self, _: u64, _: Digest) -> Result<SnapshotProof, CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn committed(&self, _: u64) -> Result<Committed, CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn epochs(&self, _: u64) -> Result<Vec<CommitCertificate>, CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn pin(&self, _: u64) -> Result<(), CatchUpError> {
            Err(CatchUpError::Local("not served".into()))
        }
        fn round(&self) -> Option<u64> {
            self.0
        }
    }

    fn head(round: u64) -> BlockInfo {
        BlockInfo {
            round,
            height: 5,
            block_id: Digest::ZERO,
            state_root: Digest::ZERO,
            tx_root: Digest::ZERO,
            timestamp_ms: 0,
            next_validators: None,
            parent_info: Digest::ZERO,
        }
    }

    fn guard(head_round: u64, rounds: &[Option<u64>]) -> u64 {
        let sources: Vec<Box<dyn SnapshotSource>> = rounds
            .iter()
            .map(|r| Box::new(Says(*r)) as Box<dyn SnapshotSource>)
            .collect();
        // n = 4: three peers, f + 1 = 2.
        let s = rejoin_safety(3, &head(head_round), &sources, 2);
        assert_eq!(s.epoch, 3);
        assert_eq!(s.last_voted_round, s.highest_timeout_round);
        s.last_voted_round
    }

    #[test]
    fn a_node_without_its_safety_record_sits_out_the_rounds_it_may_have_voted_in() {
        // Honest peers in rounds 40 and 41, the certified head older: the
        // wiped node may have voted up to round 41; it votes again above 43.
        assert_eq!(guard(30, &[Some(40), Some(41), None]), 43);
        // A liar reporting a huge round cannot silence it for ever...
        assert_eq!(guard(30, &[Some(u64::MAX - 5), Some(41), Some(40)]), 44);
        // ...nor, reporting low, pull the guard below the honest rounds.
        assert!(guard(30, &[Some(0), Some(41), Some(40)]) > 41);
        // With no peer saying, the certified head's round still counts.
        assert_eq!(guard(30, &[None, None, None]), 33);
        // Review-3 SNAP-3: even when more liars than f report (the count
        // is off), the guard stays within a day of rounds of the head.
        assert_eq!(
            guard(30, &[Some(u64::MAX - 5), Some(u64::MAX - 5), Some(40)]),
            30 + MAX_ROUND_LEAD + REJOIN_MARGIN
        );
    }
}
