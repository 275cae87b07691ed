//! A TCP delay proxy standing in for a WAN link (tc/netem is not available
//! on these machines): every byte is held `delay` in each direction, in
//! order; bytes are counted per direction; while the cut flag file exists the
//! link is a black hole (open connections are dropped, new ones are accepted
//! and never answered), which is what a partition looks like to a client
//! with timeouts.
//!
//! While `proxyI.upstream` (the stats file's name with extension
//! `upstream`) exists, new connections go to the `host:port` it holds
//! instead (a fault scenario points one proxy at a fork of the remote DC).
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once, reads of at most
//! 64 KiB, and each direction's queue holds at most [`MAX_QUEUED`] chunks
//! (a reader blocks, so TCP flow control reaches the sender).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Most concurrent connections through one proxy.
pub const MAX_CONNECTIONS: usize = 64;
/// Most chunks in flight per direction of one connection.
pub const MAX_QUEUED: usize = 1024;

/// Byte counters of one proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client to upstream (requests).
    pub up: AtomicU64,
    /// Upstream to client (answers).
    pub down: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// One proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where to listen (127.0.0.1:PORT).
    pub listen: String,
    /// Where to forward.
    pub upstream: String,
    /// Held in each direction.
    pub delay: Duration,
    /// While this file exists the link is cut.
    pub cut_flag: PathBuf,
    /// Counters are written here (JSON) every 200 ms.
    pub stats_file: PathBuf,
}

fn is_cut(flag: &Path) -> bool {
    flag.exists()
}

/// Copy `from` to `to`, holding each chunk `delay`, counting into `count`,
/// until either side closes or the link is cut.
fn pump(
    from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    count: Arc<Counters>,
    up: bool,
    flag: PathBuf,
) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(MAX_QUEUED);
    let mut reader = from.try_clone().expect("clone of a connected socket");
    let writer_flag = flag.clone();
    let writer = thread::spawn(move || write_delayed(rx, &mut to, &writer_flag));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if is_cut(&flag) {
                    // Black hole: swallow, forward nothing.
                    continue;
                }
                let c = if up { &count.up } else { &count.down };
                c.fetch_add(n as u64, Ordering::Relaxed);
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Both);
}

fn write_delayed(rx: Receiver<(Instant, Vec<u8>)>, to: &mut TcpStream, flag: &Path) {
    while let Ok((due, bytes)) = rx.recv() {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if is_cut(flag) || to.write_all(&bytes).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Run the proxy until the process is stopped.
pub fn run(config: ProxyConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(&config.listen)?;
    let counters = Arc::new(Counters::default());
    let open = Arc::new(AtomicUsize::new(0));
    {
        let (counters, stats, flag) = (
            counters.clone(),
            config.stats_file.clone(),
            config.cut_flag.clone(),
        );
        thread::spawn(move || loop {
            let text = serde_json::json!({
                "up_bytes": counters.up.load(Ordering::Relaxed),
                "down_bytes": counters.down.load(Ordering::Relaxed),
                "connections": counters.connections.load(Ordering::Relaxed),
                "cut": is_cut(&flag),
            })
            .to_string();
            let tmp = stats.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &stats);
            }
            thread::sleep(Duration::from_millis(200));
        });
    }
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue; // dropped: closes the connection
        }
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (cfg, counters, open) = (config.clone(), counters.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        thread::spawn(move || {
            serve(client, &cfg, counters);
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

fn serve(client: TcpStream, cfg: &ProxyConfig, counters: Arc<Counters>) {
    if is_cut(&cfg.cut_flag) {
        // Hold the connection without an answer until the cut heals or the
        // client gives up (its timeout is what detects the partition).
        let mut sink = [0u8; 4096];
        let mut c = client;
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        loop {
            match c.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
            if !is_cut(&cfg.cut_flag) {
                return; // closed once healed: the client reconnects
            }
        }
    }
    let redirect = std::fs::read_to_string(cfg.stats_file.with_extension("upstream"))
        .ok()
        .map(|s| s.trim().to_string());
    let target = redirect.as_deref().unwrap_or(&cfg.upstream);
    let Ok(upstream) = TcpStream::connect_timeout(
        &match target.parse() {
            Ok(a) => a,
            Err(_) => return,
        },
        Duration::from_secs(2),
    ) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => return,
    };
    let (d, cu, fl) = (cfg.delay, counters.clone(), cfg.cut_flag.clone());
    let back = thread::spawn(move || pump(u2, c2, d, cu, false, fl));
    pump(
        client,
        upstream,
        cfg.delay,
        counters,
        true,
        cfg.cut_flag.clone(),
    );
    let _ = back.join();
}
