//! Signed registration load: a few enrolled identities, each on its own
//! thread, registering instances and recording every registration whose
//! commit receipt verified ("acknowledged"). Bounded in count and time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use palisade_client::{
    enrollment, parse_endpoint, registration, Client, ClientConfig, ClientError, Signer,
};
use palisade_crypto::{Role, SecretKey, TxBody};

/// The namespace the load writes in.
pub const LOAD_NAMESPACE: &str = "load";
/// Services the load spreads its instances over.
pub const LOAD_SERVICES: usize = 4;

/// An acknowledged registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Service.
    pub service: String,
    /// Instance.
    pub instance: String,
    /// Height of its receipt.
    pub height: u64,
}

/// Running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    failures: Arc<Mutex<u64>>,
    threads: Vec<JoinHandle<()>>,
}

fn client(net: &palisade_crypto::NetworkFile) -> Result<Client, ClientError> {
    Client::new(
        net.clone(),
        ClientConfig {
            commit_timeout: Duration::from_secs(8),
            request_timeout: Duration::from_secs(3),
            ..ClientConfig::default()
        },
    )
}

impl Load {
    /// Enroll `writers` fresh identities (seeded from `seed`) with the
    /// authority and start one writer thread each, each submitting at most
    /// `max_per_writer` registrations.
    pub fn start(
        network: &palisade_crypto::NetworkFile,
        authority: &mut Signer,
        writers: usize,
        max_per_writer: usize,
        seed: u64,
    ) -> Result<Load, ClientError> {
        let admin = client(network)?;
        let mut signers = Vec::new();
        for w in 0..writers {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8..16].copy_from_slice(&(w as u64).to_le_bytes());
            let key = SecretKey::from_seed(s);
            admin.execute(
                authority,
                enrollment(
                    key.public(),
                    vec![LOAD_NAMESPACE.to_string()],
                    Role::Service,
                )?,
            )?;
            signers.push(Signer::new(key));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(0u64));
        let mut threads = Vec::new();
        for (w, mut signer) in signers.into_iter().enumerate() {
            let (stop, acked, failures) = (stop.clone(), acked.clone(), failures.clone());
            let c = client(network)?;
            threads.push(std::thread::spawn(move || {
                for n in 0..max_per_writer {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let service = format!("svc{}", n % LOAD_SERVICES);
                    let instance = format!("w{w}-{seed}-{n}");
                    let reg = registration(
                        LOAD_NAMESPACE,
                        &service,
                        &instance,
                        vec![parse_endpoint("127.0.0.1:10000").expect("valid endpoint")],
                        Vec::new(),
                        600,
                    )
                    .expect("valid registration");
                    match c.execute(&mut signer, TxBody::Register(reg)) {
                        Ok(r) => acked.lock().expect("acked lock").push(Acked {
                            service,
                            instance,
                            height: r.block.height,
                        }),
                        Err(e) => {
                            tracing::debug!(error = %e, "load write failed");
                            *failures.lock().expect("failures lock") += 1;
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            }));
        }
        Ok(Load {
            stop,
            acked,
            failures,
            threads,
        })
    }

    /// Registrations acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    /// Stop the writers (each finishes its request in flight, bounded by the
    /// client's commit timeout) and return what was acknowledged and how many
    /// writes failed.
    pub fn stop(self, grace: Duration) -> (Vec<Acked>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
        let acked = self.acked.lock().expect("acked lock").clone();
        let failures = *self.failures.lock().expect("failures lock");
        (acked, failures)
    }
}
