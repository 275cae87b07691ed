//! HTTP to one node: JSON requests and the server-sent-event stream.
//!
//! Plain HTTP/1.1 through `ureq` (blocking, no TLS stack). Status codes are
//! mapped to [`ClientError::Api`] with the node's [`ApiError`] body when it
//! has one, connection problems to [`ClientError::Transport`].

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use palisade_crypto::api::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

/// Largest JSON answer read from a node.
const MAX_BODY: u64 = 16 << 20;

/// One node's API.
#[derive(Debug, Clone)]
pub(crate) struct NodeApi {
    url: String,
    agent: ureq::Agent,
}

/// Text a node supplied, made safe for a terminal: every control character
/// (ANSI escapes, carriage returns, C1 codes) and every bidirectional
/// override is shown as a `\u{..}` escape, so node text cannot move the
/// cursor, erase or reorder what the client prints (say, a STALE warning).
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c.is_control() || bidi {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Longest piece of a node's refusal kept (code or message).
const MAX_REFUSAL_CHARS: usize = 500;

/// Percent-encode one URL path segment or query value.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn agent(request_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(2).min(request_timeout)))
        .timeout_global(Some(request_timeout))
        .build()
        .into()
}

impl NodeApi {
    pub(crate) fn new(url: &str, agent: ureq::Agent) -> Self {
        NodeApi {
            url: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            node: self.url.clone(),
            reason: e.to_string(),
        }
    }

    /// Map a non-2xx answer to [`ClientError::Api`].
    fn refusal(&self, status: u16, body: &[u8]) -> ClientError {
        let (code, message) = match serde_json::from_slice::<ApiError>(body) {
            Ok(e) => (e.code, e.message),
            Err(_) => (
                format!("http_{status}"),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        let bounded =
            |s: &str| terminal_safe(&s.chars().take(MAX_REFUSAL_CHARS).collect::<String>());
        ClientError::Api {
            node: self.url.clone(),
            status,
            code: bounded(&code),
            message: bounded(&message),
        }
    }

    #[cfg(test)]
    fn refusal_for_test(&self, status: u16, body: &[u8]) -> ClientError {
        self.refusal(status, body)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Malformed(format!("{} answered unparsable JSON: {e}", self.url))
        })
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.url);
        tracing::debug!(%url, "GET");
        self.finish(self.agent.get(&url).call())
    }

    /// POST a JSON body; `timeout` overrides the agent's request bound.
    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.url);
        tracing::debug!(%url, "POST");
        let request = self.agent.post(&url);
        let result = match timeout {
            Some(t) => request
                .config()
                .timeout_global(Some(t))
                .build()
                .send_json(body),
            None => request.send_json(body),
        };
        self.finish(result)
    }

    /// Open a server-sent-event stream; the connection is closed by the client
    /// after `lifetime` (the caller reconnects and resumes).
    pub(crate) fn stream(
        &self,
        path: &str,
        lifetime: Duration,
    ) -> Result<Box<dyn BufRead + Send>, ClientError> {
        let url = format!("{}{path}", self.url);
        tracing::debug!(%url, "GET stream");
        let result = self
            .agent
            .get(&url)
            .header("accept", "text/event-stream")
            .config()
            .timeout_global(Some(lifetime))
            .build()
            .call();
        let mut response = result.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .unwrap_or_default();
            return Err(self.refusal(status, &body));
        }
        let reader = response.into_body().into_reader().take(u64::MAX);
        Ok(Box::new(BufReader::new(reader)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_text_cannot_reach_the_terminal_as_control_characters() {
        let hostile = "ok\u{1b}[2K\u{1b}[1A\rfine\u{9b}31m\u{202e}txet";
        let safe = terminal_safe(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe}");
        assert!(!safe.contains('\u{202e}'));
        assert!(safe.contains("\\u{1b}[2K"), "{safe}");
        assert_eq!(terminal_safe("plain text: 503"), "plain text: 503");
    }

    #[test]
    fn a_refusal_is_escaped_and_bounded() {
        let node = NodeApi::new("http://n", agent(Duration::from_secs(1)));
        let body = format!(
            r#"{{"code":"x\u001b[31m","message":"{}\u001b[2K"}}"#,
            "m".repeat(10_000)
        );
        match node.refusal_for_test(503, body.as_bytes()) {
            ClientError::Api { code, message, .. } => {
                assert!(!code.contains('\u{1b}') && !message.contains('\u{1b}'));
                assert!(message.len() <= MAX_REFUSAL_CHARS, "{}", message.len());
            }
            other => panic!("{other:?}"),
        }
    }
}
