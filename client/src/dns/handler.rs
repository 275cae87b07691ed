//! hickory's request handler: parse, verify (bounded), answer.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::sync::Semaphore;

use super::answer::{answer, Outcome};
use super::name::parse_name;
use super::zone::Zone;
use super::DnsConfig;

/// Largest UDP answer to a query without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_BYTES: usize = 512;
/// Largest UDP payload offered with EDNS (DNS flag day 2020), whatever the
/// query offers.
const MAX_EDNS_PAYLOAD: u16 = 1232;

/// Keep the records that fit in `budget` bytes (measured uncompressed, so
/// conservatively), answers first; report whether an answer was cut.
fn fit(answers: &mut Vec<Record>, additionals: &mut Vec<Record>, budget: usize) -> bool {
    let size = |r: &Record| r.to_bytes().map_or(usize::MAX, |b| b.len());
    let mut used = 0usize;
    let mut kept = 0;
    for r in answers.iter() {
        used = used.saturating_add(size(r));
        if used > budget {
            break;
        }
        kept += 1;
    }
    let cut = kept < answers.len();
    answers.truncate(kept);
    if cut {
        additionals.clear();
        return true;
    }
    let mut kept = 0;
    for r in additionals.iter() {
        used = used.saturating_add(size(r));
        if used > budget {
            break;
        }
        kept += 1;
    }
    additionals.truncate(kept);
    false
}

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
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            tracing::warn!("dns: too many verifications in flight");
            return Outcome::ServFail;
        };
        let (ns, svc) = q.service();
        let (ns, svc) = (ns.to_string(), svc.to_string());
        let zone = self.zone.clone();
        // The permit goes with the task: a verification that outlives the
        // query's time bound still counts until it ends.
        let lookup = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            zone.resolve(&ns, &svc)
        });
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
        let mut outcome = answer(
            &q,
            name,
            query.query_type(),
            &verified,
            self.config.ttl,
            max,
        );
        // Without EDNS a UDP answer must fit 512 bytes; with it, hickory
        // cuts at the payload size the response offers (handle_request).
        if request.protocol() == Protocol::Udp && request.edns().is_none() {
            if let Outcome::Records {
                answers,
                additionals,
                truncated,
            } = &mut outcome
            {
                let question = query
                    .original()
                    .to_bytes()
                    .map_or(PLAIN_UDP_BYTES, |b| b.len());
                let budget = PLAIN_UDP_BYTES.saturating_sub(12 + question);
                *truncated |= fit(answers, additionals, budget);
            }
        }
        outcome
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
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(asked) = request.edns() {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().clamp(512, MAX_EDNS_PAYLOAD));
            edns.set_version(0);
            builder.edns(edns);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SRV};
    use hickory_proto::rr::{Name, RData};

    #[test]
    fn fit_keeps_what_fits_answers_first_and_says_when_an_answer_was_cut() {
        let name = Name::from_ascii("_api._tcp.prod.palisade.").unwrap();
        let target = Name::from_ascii("instance-with-a-long-name.api.prod.palisade.").unwrap();
        let srv = |p| {
            Record::from_rdata(
                name.clone(),
                5,
                RData::SRV(SRV::new(0, 1, p, target.clone())),
            )
        };
        let a = Record::from_rdata(target.clone(), 5, RData::A(A::new(10, 0, 0, 1)));
        let one = srv(1).to_bytes().unwrap().len();

        let (mut ans, mut add) = (vec![srv(1), srv(2), srv(3)], vec![a.clone()]);
        assert!(fit(&mut ans, &mut add, 2 * one + 1));
        assert_eq!((ans.len(), add.len()), (2, 0));

        let (mut ans, mut add) = (vec![srv(1)], vec![a.clone(), a.clone()]);
        let a_len = a.to_bytes().unwrap().len();
        assert!(!fit(&mut ans, &mut add, one + a_len));
        assert_eq!((ans.len(), add.len()), (1, 1));

        // 40 SRV answers never fit a plain UDP answer.
        let (mut ans, mut add) = ((0..40).map(srv).collect::<Vec<_>>(), vec![]);
        assert!(fit(&mut ans, &mut add, PLAIN_UDP_BYTES - 12 - 30));
        let total: usize = ans.iter().map(|r| r.to_bytes().unwrap().len()).sum();
        assert!(total <= PLAIN_UDP_BYTES - 12 - 30 && !ans.is_empty());
    }
}
