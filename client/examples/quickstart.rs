//! Quick start: register an instance, keep its lease alive, and find it again
//! through a verified lookup and a verified watch.
//!
//! ```sh
//! cargo run -p palisade-client --example quickstart -- NETWORK_JSON KEY_FILE
//! ```
//! The key must be enrolled in namespace `demo` (e.g. by `palisade enroll`).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use palisade_client::{
    load_network_file, parse_endpoint, parse_label, registration, Client, ClientConfig,
    HeartbeatTask, InstanceRef, Signer,
};
use palisade_crypto::TxBody;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(network), Some(key)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: quickstart NETWORK_JSON KEY_FILE");
    };
    let client = Arc::new(Client::new(
        load_network_file(network.as_ref())?,
        ClientConfig::default(),
    )?);
    let mut signer = Signer::load(key.as_ref())?;

    // Register and wait for the verified commit receipt.
    let reg = registration(
        "demo",
        "quickstart",
        "qs-1",
        vec![parse_endpoint("http://127.0.0.1:8080")?],
        vec![parse_label("zone=local")?],
        30,
    )?;
    let receipt = client.execute(&mut signer, TxBody::Register(reg))?;
    println!("registered at height {}", receipt.block.height);

    // Renew the 30 s lease every 10 s until stopped.
    let instance = InstanceRef {
        namespace: "demo".into(),
        service: "quickstart".into(),
        instance: "qs-1".into(),
    };
    let heartbeats = HeartbeatTask::spawn(
        client.clone(),
        signer.clone(),
        instance.clone(),
        Duration::from_secs(10),
    );

    // A verified lookup: every instance, proven against a certified root.
    let answer = client.lookup("demo", "quickstart")?;
    for i in answer.service().instances() {
        println!("{} -> {:?}", i.instance, i.endpoints);
    }

    // Stop renewing, deregister, and see that change arrive verified.
    println!("heartbeats: {:?}", heartbeats.stop());
    let from = answer.service().height + 1;
    client.execute(&mut signer, instance.deregister())?;
    if let Some(update) = client.watch("demo", Some("quickstart"), Some(from)).next() {
        let update = update?;
        println!(
            "height {}: {} instances",
            update.height,
            update.instances().len()
        );
    }
    Ok(())
}
