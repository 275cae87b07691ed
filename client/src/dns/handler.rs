//! hickory's request handler: parse, verify (bounded), answer.

use std::sync::Arc;

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::sync::Semaphore;

use super::answer::{answer, Outcome};
use super::name::parse_name;
use super::zone::Zone;
use super::DnsConfig;

pub(crate) struct Handler {
    zone: Arc<Zone>,
    config: DnsConfig,
    inflight: Arc<Semaphore>,
}

impl Handler {
    pub(crate) fn new(zone: Arc<Zone>, config: &DnsConfig) -> Self {
        Handler {
            zone,
            config: config.clone(),
            inflight: Arc::new(Semaphore::new(config.max_inflight.max(1))),
        }
    }

    async fn outcome(&self, request: &Request) -> Outcome {
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            return Outcome::Refused;
        }
        // One question per message, as every resolver sends.
        let [query] = request.queries() else {
            return Outcome::Refused;
        };
        if query.query_class() != DNSClass::IN {
            return Outcome::Refused;
        }
        let name = query.original().name();
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let q = match parse_name(&labels) {
            None => return Outcome::Refused,
            Some(None) => return Outcome::NxDomain,
            Some(Some(q)) => q,
        };
        let Ok(_permit) = self.inflight.clone().try_acquire_owned() else {
            tracing::warn!("dns: too many verifications in flight");
            return Outcome::ServFail;
        };
        let (ns, svc) = q.service();
        let (ns, svc) = (ns.to_string(), svc.to_string());
        let zone = self.zone.clone();
        let lookup = tokio::task::spawn_blocking(move || zone.resolve(&ns, &svc));
        let verified = match tokio::time::timeout(self.config.lookup_timeout, lookup).await {
            Ok(Ok(Ok(v))) => v,
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, name = %name, "dns: nothing verified");
                return Outcome::ServFail;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "dns: verification task failed");
                return Outcome::ServFail;
            }
            Err(_) => {
                tracing::warn!(name = %name, "dns: verification timed out");
                return Outcome::ServFail;
            }
        };
        let max = match request.protocol() {
            Protocol::Udp => self.config.max_udp_records,
            _ => self.config.max_tcp_records,
        };
        answer(
            &q,
            name,
            query.query_type(),
            &verified,
            self.config.ttl,
            max,
        )
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let outcome = self.outcome(request).await;
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(false);
        let empty: Vec<Record> = Vec::new();
        let sent = match &outcome {
            Outcome::Records {
                answers,
                additionals,
                truncated,
            } => {
                header.set_authoritative(true);
                header.set_truncated(*truncated);
                let msg = builder.build(
                    header,
                    answers.iter(),
                    empty.iter(),
                    empty.iter(),
                    additionals.iter(),
                );
                response.send_response(msg).await
            }
            other => {
                let code = match other {
                    Outcome::Refused => ResponseCode::Refused,
                    Outcome::NxDomain => {
                        header.set_authoritative(true);
                        ResponseCode::NXDomain
                    }
                    _ => ResponseCode::ServFail,
                };
                header.set_response_code(code);
                response
                    .send_response(builder.build_no_records(header))
                    .await
            }
        };
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "dns: could not send the answer");
                let mut h = Header::response_from_request(request.header());
                h.set_response_code(ResponseCode::ServFail);
                h.into()
            }
        }
    }
}
