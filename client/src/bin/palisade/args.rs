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

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    Service,
    Admin,
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
pub(crate) enum Command {
    /// Key files.
    #[command(subcommand)]
    Keys(KeysCommand),
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
    /// Renew an instance's lease; exits 0 once committed (with --every, keeps renewing).
    Heartbeat {
        #[command(flatten)]
        submit: Submit,
        #[command(flatten)]
        target: Target,
        /// Renew every SECS seconds until interrupted.
        #[arg(long, value_name = "SECS")]
        every: Option<u64>,
    },
    /// Verified lookup of NAMESPACE/SERVICE.
    Lookup {
        #[command(flatten)]
        read: Read,
        /// NAMESPACE/SERVICE.
        target: String,
    },
    /// Verified list of the services of NAMESPACE.
    Services {
        #[command(flatten)]
        read: Read,
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
