//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Palisade client: signed requests, verified lookups and watches"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args)]
pub(crate) struct Net {
    /// The network file (chain id, genesis validators, node endpoints).
    #[arg(long, value_name = "FILE")]
    pub(crate) network: PathBuf,
    /// Talk to this node only (API URL), e.g. to test a suspect node.
    #[arg(long, value_name = "URL")]
    pub(crate) node: Option<String>,
    /// Seconds to wait for a commit; also bounds each request (at most 10 s).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) timeout: u64,
}

#[derive(Args)]
pub(crate) struct Submit {
    #[command(flatten)]
    pub(crate) net: Net,
    /// Key file of the signer.
    #[arg(long, value_name = "PATH")]
    pub(crate) key: PathBuf,
    /// Print the receipt as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct Target {
    /// Namespace.
    #[arg(long, value_name = "NS")]
    pub(crate) namespace: String,
    /// Service.
    #[arg(long, value_name = "SVC")]
    pub(crate) service: String,
    /// Instance id.
    #[arg(long, value_name = "ID")]
    pub(crate) instance: String,
}

/// An instance, or none (then: all of the key's instances).
#[derive(Args)]
pub(crate) struct MaybeTarget {
    /// Namespace.
    #[arg(long, value_name = "NS", requires_all = ["service", "instance"])]
    pub(crate) namespace: Option<String>,
    /// Service.
    #[arg(long, value_name = "SVC", requires_all = ["namespace", "instance"])]
    pub(crate) service: Option<String>,
    /// Instance id.
    #[arg(long, value_name = "ID", requires_all = ["namespace", "service"])]
    pub(crate) instance: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    Service,
    Admin,
}

#[derive(Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Check an equivocation evidence file (written by a node whose link
    /// froze) against the equivocating datacenter's network file alone.
    Verify {
        /// That datacenter's network.json.
        #[arg(long, value_name = "FILE")]
        network: PathBuf,
        /// The evidence file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a key file (mode 0600) and print its public key.
    Gen {
        /// Where to write the key file (never overwritten).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum ValidatorsCommand {
    /// Print the newest epoch's validators, verified from genesis through
    /// every certified epoch change.
    List {
        #[command(flatten)]
        net: Net,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a validator from the next epoch on (enrollment authority; M-of-N
    /// with --cosign). Its node should already run as a learner.
    Add {
        #[command(flatten)]
        submit: Submit,
        /// Key files of cosigning authority members.
        #[arg(long, value_name = "KEY")]
        cosign: Vec<PathBuf>,
        /// The validator's public key (hex), with its voting power after a
        /// colon (default: the lowest power in the current set).
        #[arg(value_name = "KEY[:POWER]")]
        validator: String,
    },
    /// Remove a validator from the next epoch on (enrollment authority;
    /// M-of-N with --cosign).
    Remove {
        #[command(flatten)]
        submit: Submit,
        /// Key files of cosigning authority members.
        #[arg(long, value_name = "KEY")]
        cosign: Vec<PathBuf>,
        /// The validator's public key (hex).
        #[arg(value_name = "KEY")]
        validator: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Key files.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The validator set: list it, or change it from the next epoch on.
    #[command(subcommand)]
    Validators(ValidatorsCommand),
    /// Check evidence files offline.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Enroll an identity in namespaces (enrollment authority; M-of-N with --cosign).
    Enroll {
        #[command(flatten)]
        submit: Submit,
        /// Key files of cosigning authority members.
        #[arg(long, value_name = "KEY")]
        cosign: Vec<PathBuf>,
        /// Public key (hex) of the identity.
        #[arg(long, value_name = "PUBKEY")]
        identity: String,
        /// Namespace it may write (repeatable).
        #[arg(long, value_name = "NS", required = true)]
        namespace: Vec<String>,
        /// Its role there.
        #[arg(long, value_enum, default_value = "service")]
        role: RoleArg,
    },
    /// Revoke an identity (enrollment authority; M-of-N with --cosign).
    Revoke {
        #[command(flatten)]
        submit: Submit,
        /// Key files of cosigning authority members.
        #[arg(long, value_name = "KEY")]
        cosign: Vec<PathBuf>,
        /// Public key (hex) of the identity.
        #[arg(long, value_name = "PUBKEY")]
        identity: String,
    },
    /// Register (or update) an instance; exits 0 once committed.
    Register {
        #[command(flatten)]
        submit: Submit,
        #[command(flatten)]
        target: Target,
        /// Endpoint HOST:PORT or PROTOCOL://HOST:PORT (repeatable).
        #[arg(long, value_name = "HOST:PORT", required = true)]
        endpoint: Vec<String>,
        /// Label key=value (repeatable).
        #[arg(long, value_name = "K=V")]
        label: Vec<String>,
        /// Lease time-to-live in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        ttl: u32,
        /// Version string of the instance.
        #[arg(long, value_name = "V", default_value = "")]
        version: String,
        /// Ask validators to probe this HTTP path on the first endpoint.
        #[arg(long, value_name = "PATH", conflicts_with = "probe_tcp")]
        probe_http: Option<String>,
        /// Ask validators to probe a TCP connection to the first endpoint.
        #[arg(long)]
        probe_tcp: bool,
        /// Seconds between probes.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        probe_interval: u32,
    },
    /// Remove an instance; exits 0 once committed.
    Deregister {
        #[command(flatten)]
        submit: Submit,
        #[command(flatten)]
        target: Target,
    },
    /// Renew leases. With --namespace/--service/--instance: one instance by a
    /// Heartbeat transaction (block-time chains), exits 0 once committed.
    /// Without them: every instance of the key, by an off-consensus heartbeat
    /// sent to every node (attested chains), exits 0 when a quorum took it.
    /// With --every, keeps renewing.
    Heartbeat {
        #[command(flatten)]
        submit: Submit,
        #[command(flatten)]
        target: MaybeTarget,
        /// Renew every SECS seconds until interrupted.
        #[arg(long, value_name = "SECS")]
        every: Option<u64>,
    },
    /// Verified lookup of NAMESPACE/SERVICE.
    Lookup {
        #[command(flatten)]
        read: Read,
        /// Only instances with this label (K=V; repeatable, all must match).
        /// Filters apply to the verified record: the answer is complete for them.
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// Only passing instances whose lease is live at the certified block time.
        #[arg(long)]
        healthy: bool,
        /// Another datacenter's network file: read its records through the
        /// --network nodes and verify them against its validators (with --dc).
        #[arg(long, value_name = "FILE", requires = "dc")]
        remote: Vec<PathBuf>,
        /// The datacenter to read (one of the --remote files' datacenters).
        #[arg(long, value_name = "NAME", requires = "remote")]
        dc: Vec<String>,
        /// `local-first`: the local answer when it has a passing instance,
        /// else the --dc datacenters in order (default: the one --dc named,
        /// or the local datacenter without --dc).
        #[arg(long, value_name = "POLICY")]
        policy: Option<String>,
        /// NAMESPACE/SERVICE.
        target: String,
    },
    /// Verified list of the services of NAMESPACE.
    Services {
        #[command(flatten)]
        read: Read,
        /// Only services whose name starts with P.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// NAMESPACE.
        namespace: String,
    },
    /// Each node's own status report (unverified: height, round, leader, peers).
    Status {
        #[command(flatten)]
        net: Net,
        /// Print JSON (one object per node).
        #[arg(long)]
        json: bool,
    },
    /// Verified stream of changes to NAMESPACE/SERVICE (or a whole NAMESPACE).
    Watch {
        #[command(flatten)]
        read: Read,
        /// NAMESPACE/SERVICE or NAMESPACE.
        target: String,
        /// Replay changes from this height on.
        #[arg(long, value_name = "H")]
        from_height: Option<u64>,
        /// Another datacenter's network file: watch its service through the
        /// --network nodes, verified against its validators (with --dc).
        #[arg(long, value_name = "FILE", requires = "dc")]
        remote: Option<PathBuf>,
        /// The datacenter to watch (the --remote file's datacenter).
        #[arg(long, value_name = "NAME", requires = "remote")]
        dc: Option<String>,
    },
    /// The genesis ceremony of a new network.
    #[cfg(feature = "genesis")]
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// A local DNS server answering A, AAAA and SRV for SVC.NS.palisade. and
    /// _SVC._tcp.NS.palisade. from verified lookups only.
    #[cfg(feature = "dns")]
    Dns {
        #[command(flatten)]
        net: Net,
        /// UDP and TCP address to serve on, e.g. 127.0.0.1:5353.
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// TTL of every answer, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        ttl: u32,
        /// Refuse certified state older than SECS seconds (SERVFAIL).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        max_age: u64,
        /// Verify a remembered answer again when the watch has not updated
        /// it for SECS seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        refresh: u64,
    },
}

/// `palisade genesis ...`: the genesis ceremony (see docs/deploy.md).
#[cfg(feature = "genesis")]
#[derive(Subcommand)]
pub(crate) enum GenesisCommand {
    /// Write genesis.json and network.json for a new network (never overwrites).
    New {
        /// Chain id (one per datacenter; every transaction names it).
        #[arg(long, value_name = "ID")]
        chain_id: String,
        /// Datacenter name.
        #[arg(long, value_name = "NAME")]
        datacenter: String,
        /// A validator: its public key (from `palisade-node keygen`), its
        /// libp2p address and its API URL, e.g.
        /// `KEY=/ip4/10.0.0.1/tcp/7000,http://10.0.0.1:7100` (repeatable, in order).
        #[arg(long, value_name = "KEY=P2P_ADDR,API_URL", required = true)]
        validator: Vec<String>,
        /// Public key of an enrollment authority member (repeatable).
        #[arg(long, value_name = "KEY", required = true)]
        authority: Vec<String>,
        /// Authority signatures an enrollment or revocation needs (M of N).
        #[arg(long, value_name = "M")]
        threshold: u32,
        /// Genesis block time in ms since the Unix epoch (default: now).
        #[arg(long, value_name = "MS")]
        genesis_time_ms: Option<u64>,
        /// Directory to write genesis.json and network.json into.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Check that network.json is genesis.json's network file; print the hash.
    Verify {
        /// The genesis document.
        #[arg(long, value_name = "FILE", default_value = "genesis.json")]
        genesis: PathBuf,
        /// The network file.
        #[arg(long, value_name = "FILE", default_value = "network.json")]
        network: PathBuf,
    },
}

#[derive(Args)]
pub(crate) struct Read {
    #[command(flatten)]
    pub(crate) net: Net,
    /// Print JSON (one object per answer).
    #[arg(long)]
    pub(crate) json: bool,
    /// Refuse certified state older than SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) max_age: u64,
    /// Collect verified answers from K nodes and keep the highest.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub(crate) quorum: usize,
    /// Directory of the offline cache (default: $XDG_CACHE_HOME/palisade).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Fail (exit 3) rather than serve a verified answer older than
    /// --max-age when no fresh one can be had.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Serve a stale answer (when no fresh one can be had) only up to SECS
    /// seconds old; older ones fail (exit 3).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub(crate) max_stale_age: u64,
    /// Neither read nor write the offline cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub(crate) no_cache: bool,
}

impl MaybeTarget {
    /// The instance when all three were given (clap enforces all or none).
    pub(crate) fn into_target(self) -> Option<Target> {
        Some(Target {
            namespace: self.namespace?,
            service: self.service?,
            instance: self.instance?,
        })
    }
}
