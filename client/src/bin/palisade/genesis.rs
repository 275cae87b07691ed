//! `palisade genesis new|verify`: the genesis ceremony of a real deployment.
//!
//! The operators of the validators each run `palisade-node keygen` on their
//! own host and hand over only the public key and where the node will listen;
//! the enrollment authority members do the same with `palisade keys gen`.
//! `genesis new` then writes `genesis.json` (the consensus crate's own
//! [`Genesis`] type, so its hash is the one every node computes) and
//! `network.json` (the clients' trust anchor naming that hash), and
//! `genesis verify` lets every participant check both files before starting.

use std::path::{Path, PathBuf};

use palisade_client::ClientError;
use palisade_consensus::state::{Authority, Genesis};
use palisade_crypto::{NetworkFile, NodeEndpoint, PublicKey, Validator};

/// One `--validator KEY=P2P_ADDR,API_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidatorArg {
    pub(crate) key: PublicKey,
    pub(crate) p2p_addr: String,
    pub(crate) api_url: String,
}

fn invalid(what: &str, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(format!("{what}: {reason}"))
}

/// Parse `KEY=P2P_ADDR,API_URL`, e.g.
/// `ab12..=/ip4/10.0.0.1/tcp/7000,http://10.0.0.1:7100`.
pub(crate) fn parse_validator(s: &str) -> Result<ValidatorArg, ClientError> {
    let what = "--validator (expected KEY=P2P_ADDR,API_URL)";
    let (key, rest) = s.split_once('=').ok_or_else(|| invalid(what, s))?;
    let (p2p, api) = rest.split_once(',').ok_or_else(|| invalid(what, s))?;
    let key = PublicKey::from_hex(key.trim()).map_err(|e| invalid(what, e))?;
    let (p2p, api) = (p2p.trim(), api.trim().trim_end_matches('/'));
    // A libp2p multiaddr of a TCP listener: /ip4/A/tcp/P, /ip6/A/tcp/P or /dns/H/tcp/P.
    let parts: Vec<&str> = p2p.split('/').collect();
    let p2p_ok = parts.len() == 5
        && parts[0].is_empty()
        && ["ip4", "ip6", "dns", "dns4", "dns6"].contains(&parts[1])
        && !parts[2].is_empty()
        && parts[3] == "tcp"
        && parts[4].parse::<u16>().is_ok_and(|p| p > 0);
    if !p2p_ok {
        return Err(invalid(
            what,
            format!("p2p address {p2p:?} is not /ip4/ADDR/tcp/PORT (or ip6, dns)"),
        ));
    }
    let host_port = api.strip_prefix("http://").ok_or_else(|| {
        invalid(
            what,
            format!("API URL {api:?} must start with http:// (the node serves plain HTTP)"),
        )
    })?;
    let port_ok = host_port
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || host_port.contains('/') {
        return Err(invalid(
            what,
            format!("API URL {api:?} is not http://HOST:PORT"),
        ));
    }
    Ok(ValidatorArg {
        key,
        p2p_addr: p2p.to_string(),
        api_url: api.to_string(),
    })
}

/// What `genesis new` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct NewGenesis {
    pub(crate) chain_id: String,
    pub(crate) datacenter: String,
    pub(crate) validators: Vec<ValidatorArg>,
    pub(crate) authority: Vec<PublicKey>,
    pub(crate) threshold: u32,
    pub(crate) genesis_time_ms: u64,
}

/// Build and check the two documents (no I/O).
pub(crate) fn build(req: &NewGenesis) -> Result<(Genesis, NetworkFile), ClientError> {
    if req.datacenter.is_empty() || req.datacenter.len() > 64 {
        return Err(invalid("--datacenter", "must be 1..=64 bytes"));
    }
    for (i, v) in req.validators.iter().enumerate() {
        let earlier = &req.validators[..i];
        if earlier.iter().any(|o| o.key == v.key) {
            return Err(invalid(
                "--validator",
                format!("key {} listed twice", v.key),
            ));
        }
        if let Some(o) = earlier
            .iter()
            .find(|o| o.p2p_addr == v.p2p_addr || o.api_url == v.api_url)
        {
            return Err(invalid(
                "--validator",
                format!("{} and {} share an address", o.key, v.key),
            ));
        }
    }
    let genesis = Genesis::new(
        req.chain_id.clone(),
        req.genesis_time_ms,
        req.validators
            .iter()
            .map(|v| Validator {
                key: v.key,
                power: 1,
            })
            .collect(),
        Authority {
            members: req.authority.clone(),
            threshold: req.threshold,
        },
    );
    genesis
        .validate()
        .map_err(|e| invalid("genesis", e.to_string()))?;
    let network = NetworkFile {
        chain_id: req.chain_id.clone(),
        datacenter: req.datacenter.clone(),
        genesis_hash: genesis.hash(),
        validators: genesis.validators.clone(),
        nodes: req
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| NodeEndpoint {
                name: format!("node{i}"),
                public_key: v.key,
                api_url: v.api_url.clone(),
                p2p_addr: v.p2p_addr.clone(),
            })
            .collect(),
    };
    check(&genesis, &network)?;
    Ok((genesis, network))
}

/// Check that `network` is the network file of `genesis`: a valid genesis,
/// the same chain id, its hash, its validators, and exactly one node per
/// validator.
pub(crate) fn check(genesis: &Genesis, network: &NetworkFile) -> Result<(), ClientError> {
    let bad = |reason: String| ClientError::Invalid(format!("genesis verify: {reason}"));
    genesis
        .validate()
        .map_err(|e| bad(format!("genesis.json: {e}")))?;
    if network.chain_id != genesis.chain_id {
        return Err(bad(format!(
            "network.json names chain {:?}, genesis.json {:?}",
            network.chain_id, genesis.chain_id
        )));
    }
    if network.genesis_hash != genesis.hash() {
        return Err(bad(format!(
            "network.json names genesis hash {}, genesis.json hashes to {}",
            network.genesis_hash,
            genesis.hash()
        )));
    }
    if network.validators != genesis.validators {
        return Err(bad(
            "network.json's validator set differs from genesis.json's".into(),
        ));
    }
    for v in &genesis.validators.validators {
        let n = network
            .nodes
            .iter()
            .filter(|n| n.public_key == v.key)
            .count();
        if n != 1 {
            return Err(bad(format!(
                "validator {} has {n} node entries in network.json, expected 1",
                v.key
            )));
        }
    }
    if let Some(n) = network
        .nodes
        .iter()
        .find(|n| genesis.validators.index_of(&n.public_key).is_none())
    {
        return Err(bad(format!(
            "node {} ({}) is not a genesis validator",
            n.name, n.public_key
        )));
    }
    Ok(())
}

/// Write both files into `dir` (created), never overwriting either.
pub(crate) fn write(
    dir: &Path,
    genesis: &Genesis,
    network: &NetworkFile,
) -> Result<(PathBuf, PathBuf), ClientError> {
    let io = |p: &Path, e: std::io::Error| ClientError::Invalid(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let g = dir.join("genesis.json");
    let n = dir.join("network.json");
    for p in [&g, &n] {
        if p.exists() {
            return Err(ClientError::Invalid(format!(
                "{} exists; a genesis is made once (remove it to start over)",
                p.display()
            )));
        }
    }
    std::fs::write(&g, pretty(genesis)).map_err(|e| io(&g, e))?;
    std::fs::write(&n, pretty(network)).map_err(|e| io(&n, e))?;
    Ok((g, n))
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("documents encode as JSON") + "\n"
}

/// Read and check `genesis.json` and `network.json`.
pub(crate) fn verify(
    genesis: &Path,
    network: &Path,
) -> Result<(Genesis, NetworkFile), ClientError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| ClientError::Invalid(format!("{}: {e}", p.display())))
    };
    let g: Genesis = serde_json::from_str(&read(genesis)?)
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", genesis.display())))?;
    let n = NetworkFile::from_json(&read(network)?)
        .map_err(|e| ClientError::Invalid(format!("{}: {e}", network.display())))?;
    check(&g, &n)?;
    Ok((g, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::SecretKey;

    fn key(i: u8) -> PublicKey {
        SecretKey::from_seed([i; 32]).public()
    }

    fn request() -> NewGenesis {
        NewGenesis {
            chain_id: "prod-eu".into(),
            datacenter: "eu".into(),
            validators: (1..=4)
                .map(|i| ValidatorArg {
                    key: key(i),
                    p2p_addr: format!("/ip4/10.0.0.{i}/tcp/7000"),
                    api_url: format!("http://10.0.0.{i}:7100"),
                })
                .collect(),
            authority: vec![key(10), key(11), key(12)],
            threshold: 2,
            genesis_time_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_validator_argument_parses_and_bad_ones_say_why() {
        let s = format!(
            "{}=/ip4/10.0.0.1/tcp/7000,http://10.0.0.1:7100",
            key(1).to_hex()
        );
        let v = parse_validator(&s).unwrap();
        assert_eq!(v.key, key(1));
        assert_eq!(v.p2p_addr, "/ip4/10.0.0.1/tcp/7000");
        assert_eq!(v.api_url, "http://10.0.0.1:7100");
        let k = key(1).to_hex();
        for (arg, needle) in [
            ("nokey".to_string(), "expected KEY=P2P_ADDR,API_URL"),
            (format!("{k}=/ip4/10.0.0.1/tcp/7000"), "expected KEY"),
            (
                "zz=/ip4/1.2.3.4/tcp/1,http://a:1".to_string(),
                "--validator",
            ),
            (
                format!("{k}=10.0.0.1:7000,http://10.0.0.1:7100"),
                "not /ip4",
            ),
            (
                format!("{k}=/ip4/10.0.0.1/tcp/0,http://10.0.0.1:7100"),
                "not /ip4",
            ),
            (format!("{k}=/ip4/10.0.0.1/tcp/7000,https://x:1"), "http://"),
            (format!("{k}=/ip4/10.0.0.1/tcp/7000,http://x"), "HOST:PORT"),
        ] {
            let e = parse_validator(&arg).unwrap_err().to_string();
            assert!(e.contains(needle), "{arg}: {e}");
        }
    }

    #[test]
    fn new_builds_a_genesis_whose_hash_the_network_file_names() {
        let (g, n) = build(&request()).unwrap();
        assert_eq!(n.genesis_hash, g.hash());
        assert_eq!(g.validators.validators.len(), 4);
        assert_eq!(g.authority.threshold, 2);
        assert_eq!(n.nodes[2].api_url, "http://10.0.0.3:7100");
        check(&g, &n).unwrap();
        // Through JSON and back, as the files are read.
        let g2: Genesis = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        let n2 = NetworkFile::from_json(&serde_json::to_string(&n).unwrap()).unwrap();
        check(&g2, &n2).unwrap();
    }

    #[test]
    fn new_refuses_what_genesis_validation_refuses() {
        let mut r = request();
        r.threshold = 4;
        assert!(build(&r).unwrap_err().to_string().contains("threshold"));
        let mut r = request();
        r.validators[1].key = r.validators[0].key;
        assert!(build(&r).unwrap_err().to_string().contains("listed twice"));
        let mut r = request();
        r.validators[1].api_url = r.validators[0].api_url.clone();
        assert!(build(&r)
            .unwrap_err()
            .to_string()
            .contains("share an address"));
        let mut r = request();
        r.chain_id = String::new();
        assert!(build(&r).unwrap_err().to_string().contains("chain id"));
    }

    #[test]
    fn verify_catches_every_mismatch_between_the_files() {
        let (g, n) = build(&request()).unwrap();
        let mut other = g.clone();
        other.genesis_time_ms += 1;
        assert!(check(&other, &n)
            .unwrap_err()
            .to_string()
            .contains("genesis hash"));
        let mut m = n.clone();
        m.chain_id = "other".into();
        assert!(check(&g, &m)
            .unwrap_err()
            .to_string()
            .contains("names chain"));
        let mut m = n.clone();
        m.nodes.pop();
        assert!(check(&g, &m)
            .unwrap_err()
            .to_string()
            .contains("0 node entries"));
        let mut m = n.clone();
        m.nodes[0].public_key = key(99);
        assert!(check(&g, &m).is_err());
        let mut m = n.clone();
        m.validators.validators.pop();
        assert!(check(&g, &m)
            .unwrap_err()
            .to_string()
            .contains("validator set"));
    }
}
