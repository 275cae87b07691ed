//! A server-sent-events reader (the subset of the WHATWG event-stream format
//! the node uses: `event:` and `data:` fields, comments, blank-line dispatch).

use std::io::BufRead;

/// Longest event accepted; a node that sends more is cut off.
const MAX_EVENT_BYTES: usize = 8 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field (`message` when absent).
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
    line: String,
}

impl<R: BufRead> SseReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        SseReader {
            inner,
            line: String::new(),
        }
    }

    /// The next complete event. An event cut by the end of the stream is dropped.
    pub(crate) fn next_event(&mut self) -> Result<SseEvent, SseEnd> {
        let mut event = String::new();
        let mut data: Option<String> = None;
        let mut size = 0usize;
        loop {
            self.line.clear();
            let n = self
                .inner
                .read_line(&mut self.line)
                .map_err(|e| SseEnd::Closed(e.to_string()))?;
            if n == 0 {
                return Err(SseEnd::Closed("end of stream".into()));
            }
            size += n;
            if size > MAX_EVENT_BYTES {
                return Err(SseEnd::TooLarge);
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
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
            if line.starts_with(':') {
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
        let text = ": keepalive\n\nevent: update\ndata: {\"a\":\ndata: 1}\n\ndata:plain\r\n\r\nevent: cutoff\ndata: x";
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
}
