//! `palisade`: the Palisade client CLI.
//!
//! Exit codes: 0 success; 1 a local problem (key, network file, argument,
//! cache); 2 bad usage; 3 a node's answer failed verification; 4 the request
//! was refused (by the state machine or a node); 5 no node answered in time.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
#[cfg(feature = "genesis")]
mod genesis;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use args::{
    Cli, Command, EvidenceCommand, KeysCommand, Net, Read, RoleArg, Submit, Target,
    ValidatorsCommand,
};
use clap::Parser;
use palisade_client::{
    enrollment, load_network_file, parse_endpoint, parse_label, parse_service_path, registration,
    terminal_safe, Client, ClientConfig, ClientError, Freshness, InstanceRef, LookupAnswer, Signer,
    VerifiedReceipt,
};
use palisade_crypto::{ProbeKind, ProbeSpec, PublicKey, Role, TxBody, Validator, ValidatorSet};

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
        config.serve_stale = !read.strict;
        config.max_stale_age = Duration::from_secs(read.max_stale_age);
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

/// Load the network and key, run `act` (a signed submission that returns
/// its verified receipt) and print the receipt.
fn submit_with(
    submit: &Submit,
    cosign: &[PathBuf],
    what: &str,
    act: impl FnOnce(&Client, &mut Signer) -> Result<VerifiedReceipt, ClientError>,
) -> Result<(), ClientError> {
    let client = client(&submit.net, None)?;
    let mut signer = signer(&submit.key, cosign)?;
    let receipt = act(&client, &mut signer)?;
    print_receipt(what, submit.json, &receipt);
    Ok(())
}

fn execute(
    submit: &Submit,
    cosign: &[PathBuf],
    what: &str,
    body: TxBody,
) -> Result<(), ClientError> {
    submit_with(submit, cosign, what, |c, s| c.execute(s, body))
}

fn instance(target: &Target) -> InstanceRef {
    InstanceRef {
        namespace: target.namespace.clone(),
        service: target.service.clone(),
        instance: target.instance.clone(),
    }
}

/// The set the next epoch should have: the newest verified set with
/// `validator` added (`KEY[:POWER]`) or removed.
fn changed_set(
    current: &ValidatorSet,
    validator: &str,
    add: bool,
) -> Result<Vec<Validator>, ClientError> {
    let (key, power) = match validator.split_once(':') {
        Some((k, p)) => {
            let power: u64 = p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                ClientError::Invalid(format!("power {p:?} is not a positive integer"))
            })?;
            (k, Some(power))
        }
        None => (validator, None),
    };
    let key = PublicKey::from_hex(key)
        .map_err(|e| ClientError::Invalid(format!("validator key: {e}")))?;
    let mut set = current.validators.clone();
    let present = set.iter().any(|v| v.key == key);
    if add {
        if present {
            return Err(ClientError::Invalid(format!(
                "{key} is already a validator of epoch {}",
                current.epoch
            )));
        }
        let power = power.unwrap_or_else(|| set.iter().map(|v| v.power).min().unwrap_or(1));
        set.push(Validator { key, power });
    } else {
        if power.is_some() {
            return Err(ClientError::Invalid(
                "remove takes a key without a power".into(),
            ));
        }
        if !present {
            return Err(ClientError::Invalid(format!(
                "{key} is not a validator of epoch {}",
                current.epoch
            )));
        }
        set.retain(|v| v.key != key);
        if set.is_empty() {
            return Err(ClientError::Invalid(
                "the last validator cannot be removed".into(),
            ));
        }
    }
    Ok(set)
}

fn change_validators(
    submit: &Submit,
    cosign: &[PathBuf],
    validator: &str,
    add: bool,
) -> Result<(), ClientError> {
    let what = if add {
        "validator addition"
    } else {
        "validator removal"
    };
    submit_with(submit, cosign, what, |c, s| {
        let current = c.validators()?;
        let validators = changed_set(&current, validator, add)?;
        c.execute(s, TxBody::ChangeValidators { validators })
    })
}

fn run(cli: Cli) -> Result<(), ClientError> {
    match cli.command {
        Command::Validators(ValidatorsCommand::List { net, json }) => {
            let set = client(&net, None)?.validators()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&set)
                        .map_err(|e| ClientError::Malformed(e.to_string()))?
                );
            } else {
                println!("epoch {}: {} validators", set.epoch, set.validators.len());
                for v in &set.validators {
                    println!("  {} power {}", v.key.to_hex(), v.power);
                }
            }
            Ok(())
        }
        Command::Validators(ValidatorsCommand::Add {
            submit,
            cosign,
            validator,
        }) => change_validators(&submit, &cosign, &validator, true),
        Command::Validators(ValidatorsCommand::Remove {
            submit,
            cosign,
            validator,
        }) => change_validators(&submit, &cosign, &validator, false),
        Command::Evidence(EvidenceCommand::Verify { network, file }) => {
            let network = load_network_file(&network)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| ClientError::Invalid(format!("{}: {e}", file.display())))?;
            let evidence: palisade_crypto::dc::EquivocationEvidence =
                palisade_crypto::decode(&bytes).map_err(|e| {
                    ClientError::Malformed(format!("{}: not an evidence file: {e}", file.display()))
                })?;
            match palisade_client::verify_evidence(&network, &evidence)? {
                palisade_client::Equivocation::SameHeight { height, blocks } => println!(
                    "evidence verified: {} ({}) certified two blocks at height {height}: {} and {}",
                    terminal_safe(&network.datacenter),
                    terminal_safe(&network.chain_id),
                    blocks.0,
                    blocks.1
                ),
                palisade_client::Equivocation::TwoEpochEnds { epoch, heights } => println!(
                    "evidence verified: {} ({}) certified two different ends of epoch {epoch}, at heights {} and {}",
                    terminal_safe(&network.datacenter),
                    terminal_safe(&network.chain_id),
                    heights.0,
                    heights.1
                ),
                palisade_client::Equivocation::BrokenChain { first, second } => println!(
                    "evidence verified: {} ({}) certified a block at height {second} whose chain does not reach its certified block at height {first}",
                    terminal_safe(&network.datacenter),
                    terminal_safe(&network.chain_id)
                ),
            }
            Ok(())
        }
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
            submit_with(&submit, &[], "registration", |c, s| c.register(s, reg))
        }
        Command::Deregister { submit, target } => {
            submit_with(&submit, &[], "deregistration", |c, s| {
                c.deregister(s, &instance(&target))
            })
        }
        Command::Heartbeat {
            submit,
            target,
            every,
        } => match (target.into_target(), every) {
            (Some(target), None) => submit_with(&submit, &[], "heartbeat", |c, s| {
                c.heartbeat(s, &instance(&target))
            }),
            (Some(target), Some(secs)) => heartbeat_forever(&submit, &target, secs),
            (None, every) => lease_heartbeats(&submit, every),
        },
        Command::Lookup {
            read,
            labels,
            healthy,
            remote,
            dc,
            policy,
            target,
        } => {
            let labels = labels
                .iter()
                .map(|l| parse_label(l).map(|l| (l.key, l.value)))
                .collect::<Result<Vec<_>, _>>()?;
            let filter = palisade_client::InstanceFilter { labels, healthy };
            match policy.as_deref() {
                None if dc.is_empty() => lookup(&read, &target, &filter),
                None | Some("local-first") => {
                    let plan = remote::Plan::new(&remote, &dc, policy.is_some())?;
                    remote::lookup(&read, &target, &filter, &plan)
                }
                Some(other) => Err(ClientError::Invalid(format!(
                    "--policy {other:?}: the only policy is local-first"
                ))),
            }
        }
        Command::Status { net, json } => status(&net, json),
        Command::Services {
            read,
            prefix,
            namespace,
        } => {
            let client = client(&read.net, Some(&read))?;
            let listing = client.services(&namespace)?;
            let listing = match &prefix {
                Some(p) => palisade_client::services_with_prefix(&listing, p),
                None => listing,
            };
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
            remote: Some(remote),
            dc: Some(dc),
        } => {
            let plan = remote::Plan::new(&[remote], &[dc], false)?;
            remote::watch(&read, &target, from_height, &plan)
        }
        Command::Watch {
            read,
            target,
            from_height,
            ..
        } => watch(&read, &target, from_height),
        #[cfg(feature = "genesis")]
        Command::Genesis(cmd) => genesis_command(cmd),
        #[cfg(feature = "dns")]
        Command::Dns {
            net,
            listen,
            ttl,
            max_age,
            refresh,
        } => dns(&net, listen, ttl, max_age, refresh),
    }
}

#[cfg(feature = "genesis")]
fn genesis_command(cmd: args::GenesisCommand) -> Result<(), ClientError> {
    match cmd {
        args::GenesisCommand::New {
            chain_id,
            datacenter,
            validator,
            authority,
            threshold,
            genesis_time_ms,
            out,
        } => {
            let request = genesis::NewGenesis {
                chain_id,
                datacenter,
                validators: validator
                    .iter()
                    .map(|v| genesis::parse_validator(v))
                    .collect::<Result<_, _>>()?,
                authority: authority
                    .iter()
                    .map(|k| {
                        PublicKey::from_hex(k.trim())
                            .map_err(|e| ClientError::Invalid(format!("--authority {k}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                threshold,
                genesis_time_ms: genesis_time_ms.unwrap_or_else(now_ms),
            };
            let (g, n) = genesis::build(&request)?;
            let (gp, np) = genesis::write(&out, &g, &n)?;
            println!("genesis hash {}", g.hash());
            println!("wrote {} and {}", gp.display(), np.display());
            Ok(())
        }
        args::GenesisCommand::Verify { genesis, network } => {
            let (g, n) = genesis::verify(&genesis, &network)?;
            println!(
                "ok: chain {} ({}), genesis hash {}, {} validators, authority {} of {}",
                g.chain_id,
                n.datacenter,
                g.hash(),
                g.validators.validators.len(),
                g.authority.threshold,
                g.authority.members.len()
            );
            Ok(())
        }
    }
}

#[cfg(feature = "dns")]
fn dns(
    net: &Net,
    listen: std::net::SocketAddr,
    ttl: u32,
    max_age: u64,
    refresh: u64,
) -> Result<(), ClientError> {
    let dns = palisade_client::dns::DnsConfig {
        ttl,
        max_age: Duration::from_secs(max_age),
        refresh: Duration::from_secs(refresh),
        ..palisade_client::dns::DnsConfig::default()
    };
    // Short request bounds, no retries, no stale answers, no disk cache:
    // a DNS answer is verified now or it is SERVFAIL.
    let config = ClientConfig {
        only_node: net.node.clone(),
        request_timeout: Duration::from_secs(2),
        retries: 0,
        freshness: Freshness {
            max_age: dns.max_age,
            ..Freshness::default()
        },
        serve_stale: false,
        cache_dir: None,
        watch_stream_lifetime: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let client = Client::new(load_network_file(&net.network)?, config)?;
    palisade_client::dns::serve(Arc::new(client), listen, dns, |addr| {
        eprintln!("palisade dns: serving on {addr} (udp and tcp)");
    })
    .map_err(|e| ClientError::Invalid(format!("dns: {e}")))
}

fn heartbeat_forever(submit: &Submit, target: &Target, secs: u64) -> Result<(), ClientError> {
    let client = Arc::new(client(&submit.net, None)?);
    let mut signer = signer(&submit.key, &[])?;
    let instance = instance(target);
    loop {
        match client.heartbeat(&mut signer, &instance) {
            Ok(receipt) => print_receipt("heartbeat", submit.json, &receipt),
            Err(e @ ClientError::Rejected { .. }) => return Err(e),
            Err(e) => eprintln!(
                "palisade: heartbeat failed: {}",
                terminal_safe(&e.to_string())
            ),
        }
        std::thread::sleep(Duration::from_secs(secs.max(1)));
    }
}

/// Off-consensus heartbeats to every node, once or every SECS seconds; an
/// attempt succeeds when nodes holding a quorum (more than two thirds of
/// the network file's nodes) took it.
fn lease_heartbeats(submit: &Submit, every: Option<u64>) -> Result<(), ClientError> {
    let client = client(&submit.net, None)?;
    let signer = signer(&submit.key, &[])?;
    let nodes = client.network().nodes.len();
    let mut last_sent = 0u64;
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        last_sent = now.max(last_sent + 1);
        let hb = signer.lease_heartbeat(client.chain_id(), last_sent);
        let answers = client.send_heartbeats(&[hb]);
        let took = answers
            .iter()
            .filter(|(_, a)| matches!(a, Ok(r) if r.accepted == 1))
            .count();
        for (url, answer) in &answers {
            let verdict = match answer {
                Ok(r) if r.accepted == 1 => "taken".to_string(),
                Ok(r) => r
                    .refused
                    .first()
                    .map(|f| format!("refused: {}", f.code))
                    .unwrap_or_default(),
                Err(e) => format!("error: {e}"),
            };
            if submit.json {
                println!(
                    "{}",
                    serde_json::json!({ "node": url, "heartbeat": verdict, "sent_at_ms": last_sent })
                );
            } else {
                println!("{}: {}", terminal_safe(url), terminal_safe(&verdict));
            }
        }
        let quorum = nodes * 2 / 3 + 1;
        match every {
            None if took >= quorum => return Ok(()),
            None => {
                return Err(ClientError::Unavailable(vec![format!(
                    "{took} of {nodes} nodes took the heartbeat, {quorum} needed"
                )]))
            }
            Some(secs) => std::thread::sleep(Duration::from_secs(secs.max(1))),
        }
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

fn lookup(
    read: &Read,
    target: &str,
    filter: &palisade_client::InstanceFilter,
) -> Result<(), ClientError> {
    let (namespace, service) = parse_service_path(target)?;
    let client = client(&read.net, Some(read))?;
    let answer = client.lookup(&namespace, &service)?;
    if let LookupAnswer::Stale { age, cause, .. } = &answer {
        eprintln!(
            "palisade: warning: {}; serving the newest verified answer, {}s old (STALE)",
            terminal_safe(&cause.to_string()),
            age.as_secs()
        );
    }
    let now = now_ms();
    let stale = answer.is_stale();
    let shown = filter.apply(answer.service());
    if read.json {
        println!("{}", output::service_json(&shown, now, stale));
    } else {
        print!("{}", output::service_table(&shown, now, stale));
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
            Err(e) => eprintln!("palisade: watch: {}", terminal_safe(&e.to_string())),
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
            eprintln!("palisade: {}", terminal_safe(&e.to_string()));
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod validator_changes {
    use palisade_crypto::SecretKey;

    use super::*;

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet {
            epoch: 3,
            validators: powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    key: SecretKey::from_seed([i as u8 + 1; 32]).public(),
                    power: *p,
                })
                .collect(),
        }
    }

    #[test]
    fn add_appends_with_the_lowest_power_unless_given() {
        let current = set(&[5, 2, 7]);
        let new = SecretKey::from_seed([9; 32]).public();
        let next = changed_set(&current, &new.to_hex(), true).unwrap();
        assert_eq!(next.len(), 4);
        assert_eq!(next[3], Validator { key: new, power: 2 });
        let next = changed_set(&current, &format!("{}:11", new.to_hex()), true).unwrap();
        assert_eq!(next[3].power, 11);
        for bad in ["0", "x", "-1", ""] {
            assert!(changed_set(&current, &format!("{}:{bad}", new.to_hex()), true).is_err());
        }
    }

    #[test]
    fn add_of_a_member_and_remove_of_a_stranger_or_the_last_are_refused() {
        let current = set(&[1, 1]);
        let member = current.validators[0].key.to_hex();
        assert!(changed_set(&current, &member, true).is_err());
        let stranger = SecretKey::from_seed([9; 32]).public().to_hex();
        assert!(changed_set(&current, &stranger, false).is_err());
        let next = changed_set(&current, &member, false).unwrap();
        assert_eq!(next, vec![current.validators[1].clone()]);
        let last = set(&[1]);
        assert!(changed_set(&last, &last.validators[0].key.to_hex(), false).is_err());
        assert!(changed_set(&current, &format!("{member}:3"), false).is_err());
        assert!(changed_set(&current, "not-hex", true).is_err());
    }
}
