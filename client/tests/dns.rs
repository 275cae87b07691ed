//! `palisade dns` against a real process testnet (four `palisade-node`
//! processes on 127.0.0.1 started by `palisade-testnet up`, node 3 lying
//! about every lookup with `byzantine = ["forge-lookups"]`), queried with
//! `dig` (Debian's dnsutils) and with hickory's client. It needs `dig`
//! (scripts/deps.sh) and fails saying so without it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_client::client::{Client as DnsClient, ClientHandle};
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use palisade_crypto::NetworkFile;

/// The demo instance `palisade-testnet up` registers.
const DEMO_PORT: u16 = 9000;

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_palisade"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `palisade-testnet` and `palisade-node`, built next to `palisade` (always:
/// cargo does nothing when they are fresh, and a binary left from older
/// sources would speak an older wire format).
fn testnet_binary() -> PathBuf {
    let dir = bin_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "palisade-testnet", "-p", "palisade-node"])
        .status()
        .expect("running cargo build");
    assert!(
        status.success(),
        "building palisade-testnet and palisade-node"
    );
    dir.join("palisade-testnet")
}

/// A testnet taken down however the test ends.
struct Testnet {
    bin: PathBuf,
    dir: PathBuf,
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .args(["down", "--dir"])
            .arg(&self.dir)
            .output();
    }
}

/// A `palisade dns` process, killed (by its own PID) however the test ends.
struct DnsProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for DnsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dns(network: &Path, extra: &[&str]) -> DnsProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["dns", "--listen", "127.0.0.1:0", "--network"])
        .arg(network)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting palisade dns");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut dns = DnsProcess {
        child,
        addr: "0.0.0.0:0".parse().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("palisade dns: serving on ") {
                    dns.addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                    // Keep draining its log so it never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return dns;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Ok(Some(status)) = dns.child.try_wait() {
            panic!("palisade dns exited: {status}");
        }
    }
    panic!("palisade dns did not say where it serves within 20 s");
}

/// `dig` at `addr`: (status, answer lines).
fn dig(addr: SocketAddr, name: &str, rtype: &str) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), name, rtype])
        .args(["+noall", "+comments", "+answer", "+time=5", "+tries=1"])
        .output()
        .expect("dig is installed (Debian's dnsutils; see scripts/deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's answer: {text}"))
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

/// hickory's client at `addr` over UDP: (response code, rdata as text).
fn hickory(addr: SocketAddr, name: &str, rtype: RecordType) -> (ResponseCode, Vec<RData>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
            .with_timeout(Some(Duration::from_secs(5)))
            .build();
        let (mut client, background) = DnsClient::connect(stream).await.unwrap();
        let task = tokio::spawn(background);
        let response = client
            .query(Name::from_str(name).unwrap(), DNSClass::IN, rtype)
            .await
            .unwrap();
        task.abort();
        let data = response
            .answers()
            .iter()
            .map(|r| r.data().clone())
            .collect();
        (response.response_code(), data)
    })
}

fn palisade(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "palisade {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll `probe` (bounded: 40 tries, 0.5 s apart) until it holds.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    for _ in 0..40 {
        if probe() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what} did not happen within 20 s");
}

#[test]
fn dns_answers_verified_records_only_and_never_a_forgery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let bin = testnet_binary();
    let up = Command::new(&bin)
        .args(["up", "--detach", "--byzantine", "3:forge-lookups", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let _testnet = Testnet {
        bin: bin.clone(),
        dir: dir.clone(),
    };
    assert!(
        up.status.success(),
        "palisade-testnet up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let network_file = dir.join("network.json");
    let network = NetworkFile::from_json(&std::fs::read_to_string(&network_file).unwrap()).unwrap();
    let liar = network.nodes[3].api_url.clone();

    // The liar listed first: every cold lookup asks it before an honest node.
    let mut liar_first = network.clone();
    liar_first.nodes.rotate_right(1);
    assert_eq!(liar_first.nodes[0].api_url, liar);
    let liar_first_file = tmp.path().join("liar-first.json");
    std::fs::write(
        &liar_first_file,
        serde_json::to_string(&liar_first).unwrap(),
    )
    .unwrap();
    // A remembered answer is not verified again for 600 s: every change seen
    // below reached DNS through the verified watch.
    let dns = start_dns(&liar_first_file, &["--refresh", "600"]);
    let only_liar = start_dns(&network_file, &["--node", &liar]);

    // dig: A and SRV of the demo service, the honest port only.
    let (status, answers) = dig(dns.addr, "echo.demo.palisade.", "A");
    assert_eq!(status, "NOERROR");
    assert_eq!(answers, vec!["echo.demo.palisade. 5 IN A 127.0.0.1"]);
    let (status, answers) = dig(dns.addr, "_echo._tcp.demo.palisade.", "SRV");
    assert_eq!(status, "NOERROR");
    assert_eq!(
        answers,
        vec![format!(
            "_echo._tcp.demo.palisade. 5 IN SRV 0 1 {DEMO_PORT} echo-1.echo.demo.palisade."
        )]
    );
    let (status, answers) = dig(dns.addr, "nothing.demo.palisade.", "A");
    assert_eq!((status.as_str(), answers.len()), ("NXDOMAIN", 0));
    let (status, _) = dig(dns.addr, "example.com.", "A");
    assert_eq!(status, "REFUSED");

    // hickory's client agrees.
    let (code, data) = hickory(dns.addr, "_echo._tcp.demo.palisade.", RecordType::SRV);
    assert_eq!(code, ResponseCode::NoError);
    match data.as_slice() {
        [RData::SRV(srv)] => assert_eq!(srv.port(), DEMO_PORT),
        other => panic!("expected one SRV record, got {other:?}"),
    }
    let (code, _) = hickory(dns.addr, "nothing.demo.palisade.", RecordType::A);
    assert_eq!(code, ResponseCode::NXDomain);

    // Only the liar to ask: its forged records never verify, so SERVFAIL,
    // never an answer (and never its moved port).
    for rtype in [RecordType::A, RecordType::SRV, RecordType::A] {
        let name = match rtype {
            RecordType::SRV => "_echo._tcp.demo.palisade.",
            _ => "echo.demo.palisade.",
        };
        let (code, data) = hickory(only_liar.addr, name, rtype);
        assert_eq!(code, ResponseCode::ServFail, "{rtype}: {data:?}");
        assert!(data.is_empty());
    }
    let (status, answers) = dig(only_liar.addr, "_echo._tcp.demo.palisade.", "SRV");
    assert_eq!((status.as_str(), answers.len()), ("SERVFAIL", 0));

    // Kept fresh: a registration shows up, a deregistration goes away.
    let net = network_file.to_str().unwrap();
    let key = dir.join("keys/demo.key");
    let key = key.to_str().unwrap();
    let target = [
        "--namespace",
        "demo",
        "--service",
        "echo",
        "--instance",
        "echo-2",
    ];
    let mut register = vec!["register", "--network", net, "--key", key];
    register.extend(target);
    register.extend(["--endpoint", "10.9.9.9:9001", "--ttl", "120"]);
    palisade(&register);
    let has = |ip: &str| {
        dig(dns.addr, "echo.demo.palisade.", "A")
            .1
            .iter()
            .any(|a| a.ends_with(ip))
    };
    eventually("the new instance in DNS", || has("10.9.9.9"));
    let (_, srv) = dig(dns.addr, "_echo._tcp.demo.palisade.", "SRV");
    assert!(
        srv.iter()
            .any(|a| a.contains(" 9001 echo-2.echo.demo.palisade.")),
        "{srv:?}"
    );
    let (_, a) = dig(dns.addr, "echo-2.echo.demo.palisade.", "A");
    assert_eq!(a, vec!["echo-2.echo.demo.palisade. 5 IN A 10.9.9.9"]);
    let mut deregister = vec!["deregister", "--network", net, "--key", key];
    deregister.extend(target);
    palisade(&deregister);
    eventually("the removed instance gone from DNS", || !has("10.9.9.9"));
    let (status, _) = dig(dns.addr, "echo-2.echo.demo.palisade.", "A");
    assert_eq!(status, "NXDOMAIN");

    // No node reachable: SERVFAIL within the bound, never an old answer.
    let mut unreachable = network.clone();
    for n in &mut unreachable.nodes {
        n.api_url = "http://127.0.0.1:1".into();
    }
    let unreachable_file = tmp.path().join("unreachable.json");
    std::fs::write(
        &unreachable_file,
        serde_json::to_string(&unreachable).unwrap(),
    )
    .unwrap();
    let nowhere = start_dns(&unreachable_file, &[]);
    let (status, answers) = dig(nowhere.addr, "echo.demo.palisade.", "A");
    assert_eq!((status.as_str(), answers.len()), ("SERVFAIL", 0));

    // Garbage datagrams (random bytes, truncated headers, a header claiming
    // many questions) get no answer bigger than themselves and break nothing.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..100usize {
        let len = [1, 11, 12, 40, 512][i % 5];
        let mut packet: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        if len >= 12 {
            packet[2] &= 0x7f; // a query, not a response
            packet[4] = 0xff; // 65k+ questions claimed
        }
        socket.send_to(&packet, dns.addr).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            assert!(n <= len.max(12) + 512, "answer of {n} bytes to {len} bytes");
        }
    }
    let (status, answers) = dig(dns.addr, "echo.demo.palisade.", "A");
    assert_eq!(status, "NOERROR");
    assert_eq!(answers, vec!["echo.demo.palisade. 5 IN A 127.0.0.1"]);
}
