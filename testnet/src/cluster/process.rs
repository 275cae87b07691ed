//! Starting and signalling node processes, by pid.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cluster::TestnetError;

/// Start `binary run --config CONFIG`, appending its output to `log`. The
/// child gets its own process group so a Ctrl-C in the terminal reaches only
/// this tool, which then stops the nodes itself.
pub fn spawn_node(
    binary: &Path,
    config: &Path,
    log: &Path,
    extra_env: &[(&str, &str)],
) -> Result<u32, TestnetError> {
    let out: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| TestnetError::io(log, e))?;
    let err = out.try_clone().map_err(|e| TestnetError::io(log, e))?;
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|e| TestnetError::io(binary, e))?;
    let pid = child.id();
    // The child is reaped by `reap` or by init once this tool exits; dropping
    // the handle does not kill it.
    std::mem::forget(child);
    Ok(pid)
}

/// Send `signal` to `pid`.
pub fn signal(pid: u32, signal: Signal) -> Result<(), TestnetError> {
    kill(Pid::from_raw(pid as i32), signal).map_err(|e| TestnetError::Signal {
        pid,
        signal: signal.to_string(),
        reason: e.to_string(),
    })
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    reap(pid);
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3, after the parenthesised command name, is the state.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Reap `pid` if it is our exited child (no-op otherwise).
fn reap(pid: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
pub fn stop(pid: u32, grace: Duration) -> Result<(), TestnetError> {
    if !alive(pid) {
        return Ok(());
    }
    // A paused process cannot act on SIGTERM.
    let _ = signal(pid, Signal::SIGCONT);
    let _ = signal(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = signal(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(TestnetError::Signal {
        pid,
        signal: "SIGKILL".into(),
        reason: "process still alive 5 s after SIGKILL".into(),
    })
}

/// A free TCP port on 127.0.0.1 for a node to listen on later, below Linux's
/// ephemeral range (32768+): a port the OS hands out as free (`bind :0`) can
/// be taken by any outgoing connection before the node binds it. Ports under
/// 32768 never go to outgoing connections; the sequence starts at a point
/// drawn from the process id, so concurrent testnets rarely try the same one.
pub fn free_port() -> Result<u16, TestnetError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(13)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestnetError::io(
        Path::new("127.0.0.1:20000-31999"),
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port"),
    ))
}
