//! The demo `up` runs once the testnet commits: the authority enrolls the
//! demo identity, which registers an instance with a signed request, and a
//! client looks it up and verifies the answer against the certified root.

use std::time::Duration;

use palisade_client::{
    enrollment, load_network_file, parse_endpoint, registration, Client, ClientConfig, ClientError,
    Signer, VerifiedService,
};
use palisade_crypto::{Label, Role, TxBody};

use crate::cluster::Layout;

/// Namespace, service and instance the demo registers.
pub const DEMO: (&str, &str, &str) = ("demo", "echo", "echo-1");

/// Enroll the demo identity, register `demo/echo/echo-1` and return the
/// verified lookup.
pub fn run(layout: &Layout) -> Result<VerifiedService, ClientError> {
    let network = load_network_file(&layout.network_file())?;
    let config = ClientConfig {
        commit_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let client = Client::new(network, config)?;
    let mut authority = Signer::load(&layout.authority_key())?;
    let mut demo = Signer::load(&layout.demo_key())?;
    let (ns, svc, inst) = DEMO;

    let receipt = client.execute(
        &mut authority,
        enrollment(demo.public(), vec![ns.to_string()], Role::Service)?,
    )?;
    tracing::info!(height = receipt.block.height, "demo identity enrolled");

    let reg = registration(
        ns,
        svc,
        inst,
        vec![parse_endpoint("127.0.0.1:9000")?],
        vec![Label {
            key: "zone".into(),
            value: "local".into(),
        }],
        300,
    )?;
    let receipt = client.execute(&mut demo, TxBody::Register(reg))?;
    tracing::info!(height = receipt.block.height, "demo instance registered");

    let answer = client.lookup(ns, svc)?;
    Ok(answer.service().clone())
}
