//! A tiny real HTTP/1.1 server on 127.0.0.1 with an ephemeral port, standing
//! in for a node: each connection serves one request and closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Request {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub body: Vec<u8>,
}

pub enum Reply {
    Json(u16, String),
    /// Server-sent events, written then the connection is closed.
    Sse(Vec<String>),
    /// Server-sent events with a pause after each (the connection stays
    /// open meanwhile); stops when the client hangs up.
    SseTrickle(Vec<String>, std::time::Duration),
}

impl Reply {
    pub fn ok<T: serde::Serialize>(value: &T) -> Reply {
        Reply::Json(200, serde_json::to_string(value).unwrap())
    }

    pub fn error(status: u16, code: &str) -> Reply {
        Reply::Json(
            status,
            format!(r#"{{"code":"{code}","message":"{code} (test)"}}"#),
        )
    }
}

/// One SSE event block.
pub fn sse_event(event: &str, data: &str) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct MockNode {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    hits: Arc<AtomicUsize>,
}

impl MockNode {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> MockNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handler: Arc<Handler> = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (requests.clone(), hits.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, r, h) = (handler.clone(), r.clone(), h.clone());
                thread::spawn(move || serve(stream, &*handler, &r, &h));
            }
        });
        MockNode {
            url,
            requests,
            hits,
        }
    }

    /// Requests served, epoch checks (`GET /v1/epochs`, which every
    /// client makes before trusting its latest epoch) excepted.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst) - self.epoch_checks()
    }

    /// Paths requested, epoch checks excepted (see [`MockNode::hits`]).
    pub fn paths(&self) -> Vec<String> {
        let all = self.requests.lock().unwrap().clone();
        all.into_iter()
            .filter(|p| !p.starts_with("GET /v1/epochs"))
            .collect()
    }

    /// How many epoch checks were made.
    pub fn epoch_checks(&self) -> usize {
        let all = self.requests.lock().unwrap();
        all.iter()
            .filter(|p| p.starts_with("GET /v1/epochs"))
            .count()
    }
}

/// A URL where nothing listens.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<String>>, hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    log.lock().unwrap().push(format!("{method} {path}"));
    let request = Request { method, path, body };
    let mut stream = stream;
    let _ = match handler(&request) {
        Reply::Json(status, text) => write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        ),
        Reply::Sse(events) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            );
            for event in events {
                let _ = stream.write_all(event.as_bytes());
                let _ = stream.flush();
            }
            Ok(())
        }
        Reply::SseTrickle(events, pause) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            );
            for event in events {
                if stream.write_all(event.as_bytes()).is_err() || stream.flush().is_err() {
                    break;
                }
                thread::sleep(pause);
            }
            Ok(())
        }
    };
    let _ = stream.flush();
}
