//! A server-sent-events reader (the subset of the WHATWG event-stream format
//! the node uses: `event:` and `data:` fields, comments, blank-line dispatch).
//!
//! Every read is bounded before it allocates: a line is read from the
//! buffer piecewise and refused as soon as the event it belongs to would
//! exceed [`MAX_EVENT_BYTES`], so a node streaming bytes without a newline
//! costs the client at most that much memory.

use std::io::BufRead;

/// Longest event accepted (all its lines together); a node that sends more
/// is cut off. The node announces a change whose proof would not fit as a
/// `changed` event instead, which the client follows with a lookup.
pub(crate) const MAX_EVENT_BYTES: usize = 8 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field (`message` when absent; empty for a comment line
    /// between events, i.e. a keepalive).
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// Why reading the next event stopped.
#[derive(Debug)]
pub(crate) enum SseEnd {
    /// The stream ended (or broke) before another complete event.
    Closed(String),
    /// An event exceeded [`MAX_EVENT_BYTES`].
    TooLarge,
}

/// Reads events from a byte stream.
pub(crate) struct SseReader<R> {
    inner: R,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        SseReader {
            inner,
            line: Vec::new(),
        }
    }

    /// Read one line (with its `\n`, if any) into `self.line`, refusing it
    /// once it would exceed `limit` bytes; nothing beyond `limit` plus one
    /// buffer fill is read or kept. Returns the bytes read (0 at the end).
    fn read_line_bounded(&mut self, limit: usize) -> Result<usize, SseEnd> {
        self.line.clear();
        loop {
            let buf = self
                .inner
                .fill_buf()
                .map_err(|e| SseEnd::Closed(e.to_string()))?;
            if buf.is_empty() {
                return Ok(self.line.len());
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if self.line.len() + take > limit {
                return Err(SseEnd::TooLarge);
            }
            self.line.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            if done {
                return Ok(self.line.len());
            }
        }
    }

    /// The next complete event. An event cut by the end of the stream is dropped.
    pub(crate) fn next_event(&mut self) -> Result<SseEvent, SseEnd> {
        let mut event = String::new();
        let mut data: Option<String> = None;
        let mut size = 0usize;
        loop {
            let n = self.read_line_bounded(MAX_EVENT_BYTES - size)?;
            if n == 0 {
                return Err(SseEnd::Closed("end of stream".into()));
            }
            size += n;
            let line = std::str::from_utf8(&self.line)
                .map_err(|_| SseEnd::Closed("event stream is not UTF-8".into()))?
                .trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match data.take() {
                    Some(data) => {
                        let event = if event.is_empty() {
                            "message".to_string()
                        } else {
                            event
                        };
                        return Ok(SseEvent { event, data });
                    }
                    None => {
                        event.clear();
                        size = 0;
                        continue;
                    }
                }
            }
            if let Some(comment) = line.strip_prefix(':') {
                // Keepalives are handed out (as an empty event name) so that a
                // reader can notice a stream that carries nothing else.
                if data.is_none() && event.is_empty() {
                    return Ok(SseEvent {
                        event: String::new(),
                        data: comment.to_string(),
                    });
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => event = value.to_string(),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_comments_and_multiline_data() {
        let text =
            "event: update\ndata: {\"a\":\ndata: 1}\n\ndata:plain\r\n\r\nevent: cutoff\ndata: x";
        let mut r = SseReader::new(text.as_bytes());
        assert_eq!(
            r.next_event().unwrap(),
            SseEvent {
                event: "update".into(),
                data: "{\"a\":\n1}".into()
            }
        );
        assert_eq!(
            r.next_event().unwrap(),
            SseEvent {
                event: "message".into(),
                data: "plain".into()
            }
        );
        // The last event is not terminated by a blank line: it is dropped.
        assert!(matches!(r.next_event(), Err(SseEnd::Closed(_))));
    }

    #[test]
    fn refuses_oversized_events() {
        let big = format!("data: {}\n", "x".repeat(MAX_EVENT_BYTES));
        let mut r = SseReader::new(big.as_bytes());
        assert!(matches!(r.next_event(), Err(SseEnd::TooLarge)));
    }

    /// Counts the bytes handed out by the inner reader.
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl<R: std::io::Read> std::io::Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn a_line_without_end_is_refused_before_it_is_read_whole() {
        use std::io::Read;
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let endless = Counting {
            inner: std::io::repeat(b'x').take(8 * MAX_EVENT_BYTES as u64),
            read: read.clone(),
        };
        let mut r = SseReader::new(std::io::BufReader::new(endless));
        assert!(matches!(r.next_event(), Err(SseEnd::TooLarge)));
        assert!(
            read.get() <= MAX_EVENT_BYTES + 64 * 1024,
            "read {} bytes of one line, the bound is {MAX_EVENT_BYTES}",
            read.get()
        );
    }

    #[test]
    fn many_lines_of_one_event_share_one_bound() {
        let line = format!("data: {}\n", "y".repeat(1000));
        let text = line.repeat(MAX_EVENT_BYTES / line.len() + 1);
        let mut r = SseReader::new(text.as_bytes());
        assert!(matches!(r.next_event(), Err(SseEnd::TooLarge)));
    }

    #[test]
    fn hands_out_keepalive_comments() {
        let mut r = SseReader::new(": a\n\n: b\n\ndata: x\n\n".as_bytes());
        for comment in [" a", " b"] {
            let e = r.next_event().unwrap();
            assert_eq!((e.event.as_str(), e.data.as_str()), ("", comment));
        }
        assert_eq!(r.next_event().unwrap().data, "x");
    }

    /// Fuzz target (proptest on stable): arbitrary bytes and structured
    /// mutations of event streams as the node writes them (axum's SSE
    /// encoding of `node/src/api/watch.rs`'s events). The reader must end
    /// on every input, never panic, and hand out no event longer than what
    /// it read. `FUZZ_CASES` sets the case count (default 2,000).
    mod fuzz {
        use proptest::prelude::*;

        use super::*;

        fn seeds() -> Vec<Vec<u8>> {
            let synced = r#"{"certificate":"00aa","service":null}"#;
            let update = r#"{"namespace":"prod","service":"api","lookup":{"height":7}}"#;
            let cutoff = r#"{"code":"cutoff","message":"stream too slow"}"#;
            [
                format!("event: update\ndata: {update}\n\nevent: synced\ndata: {synced}\n\n"),
                ": heartbeat\n\n: heartbeat\n\nevent: changed\ndata: prod/api\n\n".to_string(),
                format!("event: cutoff\ndata: {cutoff}\n\n"),
                format!("event: synced\r\ndata: {synced}\r\n\r\nevent: update\ndata:\ndata: x\n\n"),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect()
        }

        fn mutate(seed: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
            let mut b = seed.to_vec();
            for &(at, kind, v) in edits {
                let at = at % (b.len() + 1);
                match kind % 4 {
                    0 if at < b.len() => b[at] = v,
                    1 => b.insert(at, v),
                    2 if at < b.len() => {
                        b.remove(at);
                    }
                    3 => b.insert(at, [b'\n', b'\r', b':', b' '][v as usize % 4]),
                    _ => {}
                }
            }
            b
        }

        fn input() -> impl Strategy<Value = Vec<u8>> {
            let seeds = seeds();
            let n = seeds.len();
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..1024),
                (
                    0..n,
                    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
                )
                    .prop_map(move |(i, edits)| mutate(&seeds[i], &edits)),
            ]
        }

        fn cases() -> u32 {
            std::env::var("FUZZ_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000)
        }

        #[test]
        fn seeds_are_real_streams() {
            for seed in seeds() {
                let mut r = SseReader::new(&seed[..]);
                let mut events = 0;
                while r.next_event().is_ok() {
                    events += 1;
                }
                assert!(events >= 1, "{}", String::from_utf8_lossy(&seed));
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: cases(),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn fuzz_sse_stream(bytes in input()) {
                let mut r = SseReader::new(&bytes[..]);
                // Every event consumes at least one line: bounded.
                for _ in 0..=bytes.len() {
                    match r.next_event() {
                        Ok(e) => prop_assert!(e.event.len() + e.data.len() <= bytes.len()),
                        Err(SseEnd::Closed(_)) => return Ok(()),
                        Err(SseEnd::TooLarge) => prop_assert!(false, "under the bound"),
                    }
                }
                prop_assert!(false, "the reader did not end");
            }
        }
    }
}
