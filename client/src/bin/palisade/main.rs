//! `palisade`: the Palisade client CLI.
//!
//! Exit codes: 0 success; 1 a local problem (key, network file, argument,
//! cache); 2 bad usage; 3 a node's answer failed verification; 4 the request
//! was refused (by the state machine or a node); 5 no node answered in time.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use palisade_client::{
    enrollment, load_network_file, parse_endpoint, parse_label, parse_service_path, registration,
    Client, ClientConfig, ClientError, Freshness, InstanceRef, LookupAnswer, Signer,
    VerifiedReceipt,
};
use palisade_crypto::{ProbeKind, ProbeSpec, PublicKey, Role, TxBody};

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Palisade client: signed requests, verified lookups and watches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Net {
    /// The network file (chain id, genesis validators, node endpoints).
    #[arg(long, value_name = "FILE")]
    network: PathBuf,
    /// Talk to this node only (API URL), e.g. to test a suspect node.
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// Seconds to wait for a commit; also bounds each request (at most 10 s).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

#[derive(Args)]
struct Submit {
    #[command(flatten)]
    net: Net,
    /// Key file of the signer.
    #[arg(long, value_name = "PATH")]
    key: PathBuf,
    /// Print the receipt as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Target {
    /// Namespace.
    #[arg(long, value_name = "NS")]
    namespace: String,
    /// Service.
    #[arg(long, value_name = "SVC")]
    service: String,
    /// Instance id.
    #[arg(long, value_name = "ID")]
    instance: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Service,
    Admin,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a key file (mode 0600) and print its public key.
    Gen {
        /// Where to write the key file (never overwritten).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
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
struct Read {
    #[command(flatten)]
    net: Net,
    /// Print JSON (one object per answer).
    #[arg(long)]
    json: bool,
    /// Refuse certified state older than SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    max_age: u64,
    /// Collect verified answers from K nodes and keep the highest.
    #[arg(long, value_name = "K", default_value_t = 1)]
    quorum: usize,
    /// Directory of the offline cache (default: $XDG_CACHE_HOME/palisade).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Neither read nor write the offline cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn exit_code(e: &ClientError) -> u8 {
    if e.is_verification_failure() {
        3
    } else if matches!(e, ClientError::Rejected { .. } | ClientError::Api { .. })
        && !e.is_unavailable()
    {
        4
    } else if e.is_unavailable() {
        5
    } else {
        1
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("palisade"))
}

fn client(net: &Net, read: Option<&Read>) -> Result<Client, ClientError> {
    let network = load_network_file(&net.network)?;
    let mut config = ClientConfig {
        only_node: net.node.clone(),
        commit_timeout: Duration::from_secs(net.timeout),
        request_timeout: Duration::from_secs(net.timeout.clamp(1, 10)),
        ..ClientConfig::default()
    };
    if let Some(read) = read {
        config.freshness = Freshness {
            max_age: Duration::from_secs(read.max_age),
            ..Freshness::default()
        };
        config.read_quorum = read.quorum;
        config.cache_dir = if read.no_cache {
            None
        } else {
            read.cache_dir.clone().or_else(default_cache_dir)
        };
    }
    Client::new(network, config)
}

fn signer(key: &std::path::Path, cosign: &[PathBuf]) -> Result<Signer, ClientError> {
    let mut signer = Signer::load(key)?;
    for path in cosign {
        signer = signer.with_cosigner(palisade_keys::load_key_file(path)?);
    }
    Ok(signer)
}

fn identity(hex: &str) -> Result<PublicKey, ClientError> {
    PublicKey::from_hex(hex).map_err(|e| ClientError::Invalid(format!("--identity: {e}")))
}

fn print_receipt(what: &str, json: bool, receipt: &VerifiedReceipt) {
    if json {
        println!("{}", output::receipt_json(receipt));
    } else {
        println!("{}", output::receipt_text(what, receipt));
    }
}

fn execute(
    submit: &Submit,
    cosign: &[PathBuf],
    what: &str,
    body: TxBody,
) -> Result<(), ClientError> {
    let client = client(&submit.net, None)?;
    let mut signer = signer(&submit.key, cosign)?;
    let receipt = client.execute(&mut signer, body)?;
    print_receipt(what, submit.json, &receipt);
    Ok(())
}

fn instance(target: &Target) -> InstanceRef {
    InstanceRef {
        namespace: target.namespace.clone(),
        service: target.service.clone(),
        instance: target.instance.clone(),
    }
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match cli.command {
        Command::Keys(KeysCommand::Gen { out }) => {
            let key = palisade_keys::generate_key_file(&out)?;
            println!("{}", key.public().to_hex());
            Ok(())
        }
        Command::Enroll {
            submit,
            cosign,
            identity: id,
            namespace,
            role,
        } => {
            let role = match role {
                RoleArg::Service => Role::Service,
                RoleArg::Admin => Role::Admin,
            };
            let body = enrollment(identity(&id)?, namespace, role)?;
            execute(&submit, &cosign, "enrollment", body)
        }
        Command::Revoke {
            submit,
            cosign,
            identity: id,
        } => {
            let body = TxBody::Revoke {
                identity: identity(&id)?,
            };
            execute(&submit, &cosign, "revocation", body)
        }
        Command::Register {
            submit,
            target,
            endpoint,
            label,
            ttl,
            version,
            probe_http,
            probe_tcp,
            probe_interval,
        } => {
            let endpoints = endpoint
                .iter()
                .map(|e| parse_endpoint(e))
                .collect::<Result<_, _>>()?;
            let labels = label
                .iter()
                .map(|l| parse_label(l))
                .collect::<Result<_, _>>()?;
            let mut reg = registration(
                &target.namespace,
                &target.service,
                &target.instance,
                endpoints,
                labels,
                ttl,
            )?;
            reg.version = version;
            let kind = match (probe_http, probe_tcp) {
                (Some(path), _) => Some(ProbeKind::Http { path }),
                (None, true) => Some(ProbeKind::Tcp),
                (None, false) => None,
            };
            reg.probe = kind.map(|kind| ProbeSpec {
                kind,
                interval_secs: probe_interval,
            });
            execute(&submit, &[], "registration", TxBody::Register(reg))
        }
        Command::Deregister { submit, target } => execute(
            &submit,
            &[],
            "deregistration",
            instance(&target).deregister(),
        ),
        Command::Heartbeat {
            submit,
            target,
            every,
        } => match every {
            None => execute(&submit, &[], "heartbeat", instance(&target).heartbeat()),
            Some(secs) => heartbeat_forever(&submit, &target, secs),
        },
        Command::Lookup { read, target } => lookup(&read, &target),
        Command::Status { net, json } => status(&net, json),
        Command::Services { read, namespace } => {
            let client = client(&read.net, Some(&read))?;
            let listing = client.services(&namespace)?;
            if read.json {
                println!("{}", output::namespace_json(&listing, now_ms()));
            } else {
                print!("{}", output::namespace_text(&listing, now_ms()));
            }
            Ok(())
        }
        Command::Watch {
            read,
            target,
            from_height,
        } => watch(&read, &target, from_height),
    }
}

fn heartbeat_forever(submit: &Submit, target: &Target, secs: u64) -> Result<(), ClientError> {
    let client = Arc::new(client(&submit.net, None)?);
    let mut signer = signer(&submit.key, &[])?;
    let instance = instance(target);
    loop {
        match client.execute(&mut signer, instance.heartbeat()) {
            Ok(receipt) => print_receipt("heartbeat", submit.json, &receipt),
            Err(e @ ClientError::Rejected { .. }) => return Err(e),
            Err(e) => eprintln!("palisade: heartbeat failed: {e}"),
        }
        std::thread::sleep(Duration::from_secs(secs.max(1)));
    }
}

fn status(net: &Net, json: bool) -> Result<(), ClientError> {
    let client = client(net, None)?;
    let reports = client.node_status();
    let answered = reports.iter().filter(|(_, r)| r.is_ok()).count();
    if json {
        for (url, report) in &reports {
            println!("{}", output::status_json(url, report));
        }
    } else {
        print!("{}", output::status_table(&reports));
    }
    if answered == 0 {
        return Err(ClientError::Unavailable(
            reports
                .iter()
                .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
                .collect(),
        ));
    }
    Ok(())
}

fn lookup(read: &Read, target: &str) -> Result<(), ClientError> {
    let (namespace, service) = parse_service_path(target)?;
    let client = client(&read.net, Some(read))?;
    let answer = client.lookup(&namespace, &service)?;
    if let LookupAnswer::Cached { age, cause, .. } = &answer {
        eprintln!(
            "palisade: warning: {cause}; serving the cached verified answer, {}s old",
            age.as_secs()
        );
    }
    let now = now_ms();
    let stale = answer.is_stale();
    if read.json {
        println!("{}", output::service_json(answer.service(), now, stale));
    } else {
        print!("{}", output::service_table(answer.service(), now, stale));
    }
    Ok(())
}

fn watch(read: &Read, target: &str, from_height: Option<u64>) -> Result<(), ClientError> {
    let (namespace, service) = match target.split_once('/') {
        Some(_) => {
            let (ns, svc) = parse_service_path(target)?;
            (ns, Some(svc))
        }
        None => (target.to_string(), None),
    };
    let client = client(&read.net, Some(read))?;
    let show = |s: &palisade_client::VerifiedService| {
        if read.json {
            println!("{}", output::service_json(s, now_ms(), false));
        } else {
            print!("{}", output::service_table(s, now_ms(), false));
        }
    };
    // Without --from-height, start right after a verified current height, so
    // no change between that answer and the stream is missed.
    let from = match (&service, from_height) {
        (_, Some(h)) => h,
        (Some(svc), None) => {
            let (current, _) = client.lookup_fresh(&namespace, svc)?;
            show(&current);
            current.height + 1
        }
        (None, None) => client.services(&namespace)?.height + 1,
    };
    for update in client.watch(&namespace, service.as_deref(), Some(from)) {
        match update {
            Ok(s) => show(&s),
            // A suspect node under test (--node) that lies ends the watch.
            Err(e) if read.net.node.is_some() && e.is_verification_failure() => return Err(e),
            Err(e) => eprintln!("palisade: watch: {e}"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
