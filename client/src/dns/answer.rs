//! The records a verified service record answers a question with (pure).

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use palisade_crypto::{Endpoint, InstanceRecord};

use super::name::{QueryName, ZONE};
use crate::VerifiedService;

/// What the DNS face answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not ours to answer (outside the zone, another class or opcode).
    Refused,
    /// A verified absence (or a name the zone cannot hold).
    NxDomain,
    /// Nothing verified in time.
    ServFail,
    /// A verified answer (possibly empty: the name exists, the type has no data).
    Records {
        /// Answer section.
        answers: Vec<Record>,
        /// Additional section (addresses of SRV targets).
        additionals: Vec<Record>,
        /// Records were left out for size: the resolver should ask over TCP.
        truncated: bool,
    },
}

/// An instance is served only when it is passing and its lease is live at
/// the certified block time (never by the local clock).
fn passing(service: &VerifiedService) -> impl Iterator<Item = &InstanceRecord> {
    service
        .instances()
        .iter()
        .filter(move |i| crate::is_healthy(i, service.timestamp_ms))
}

fn ip_of(e: &Endpoint) -> Option<IpAddr> {
    e.host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn address(name: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// A/AAAA records of these instances' IP-literal endpoints (deduplicated).
fn addresses<'a>(
    name: &Name,
    ttl: u32,
    qtype: RecordType,
    instances: impl Iterator<Item = &'a InstanceRecord>,
) -> Vec<Record> {
    let mut seen: Vec<IpAddr> = Vec::new();
    let mut out = Vec::new();
    for ip in instances.flat_map(|i| i.endpoints.iter().filter_map(ip_of)) {
        if !seen.contains(&ip) {
            seen.push(ip);
            out.extend(address(name, ttl, ip, qtype));
        }
    }
    out
}

fn instance_name(q: &QueryName, instance: &str) -> Option<Name> {
    let (ns, svc) = q.service();
    Name::from_ascii(format!("{instance}.{svc}.{ns}.{ZONE}.")).ok()
}

fn srv(
    q: &QueryName,
    name: &Name,
    ttl: u32,
    service: &VerifiedService,
) -> (Vec<Record>, Vec<Record>) {
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for inst in passing(service) {
        for e in inst.endpoints.iter().filter(|e| e.protocol != "udp") {
            let target = match ip_of(e) {
                Some(ip) => match instance_name(q, &inst.instance) {
                    Some(t) => {
                        for qt in [RecordType::A, RecordType::AAAA] {
                            additionals.extend(address(&t, ttl, ip, qt));
                        }
                        t
                    }
                    None => continue,
                },
                None => match Name::from_ascii(format!("{}.", e.host)) {
                    Ok(t) => t,
                    Err(_) => continue,
                },
            };
            let rdata = RData::SRV(SRV::new(0, e.weight, e.port, target));
            answers.push(Record::from_rdata(name.clone(), ttl, rdata));
        }
    }
    additionals.dedup();
    (answers, additionals)
}

/// The answer to `qtype` for `qname` (parsed as `q`) from a verified record
/// of `q`'s service, at most `max_records` answers (else truncated).
pub fn answer(
    q: &QueryName,
    qname: &Name,
    qtype: RecordType,
    service: &VerifiedService,
    ttl: u32,
    max_records: usize,
) -> Outcome {
    if service.record.is_none() {
        return Outcome::NxDomain;
    }
    let (mut answers, mut additionals) = match (q, qtype) {
        (QueryName::Service { .. }, RecordType::A | RecordType::AAAA) => {
            (addresses(qname, ttl, qtype, passing(service)), Vec::new())
        }
        (QueryName::Srv { .. }, RecordType::SRV) => srv(q, qname, ttl, service),
        (QueryName::Instance { instance, .. }, _) => {
            if !service.instances().iter().any(|i| &i.instance == instance) {
                return Outcome::NxDomain;
            }
            let this = passing(service).filter(|i| &i.instance == instance);
            (addresses(qname, ttl, qtype, this), Vec::new())
        }
        _ => (Vec::new(), Vec::new()),
    };
    let truncated = answers.len() > max_records;
    answers.truncate(max_records);
    additionals.truncate(max_records);
    Outcome::Records {
        answers,
        additionals,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{Digest, Health, SecretKey, ServiceRecord};

    fn inst(id: &str, hosts: &[(&str, u16)], health: Health, lease: u64) -> InstanceRecord {
        InstanceRecord {
            instance: id.into(),
            owner: SecretKey::from_seed([1; 32]).public(),
            endpoints: hosts
                .iter()
                .map(|(h, p)| Endpoint {
                    protocol: "http".into(),
                    host: h.to_string(),
                    port: *p,
                    weight: 1,
                })
                .collect(),
            labels: vec![],
            version: String::new(),
            ttl_secs: 30,
            registered_at_ms: 0,
            lease_expires_at_ms: lease,
            health,
            dissenting_reporters: vec![],
            probe: None,
        }
    }

    fn service(instances: Option<Vec<InstanceRecord>>) -> VerifiedService {
        VerifiedService {
            namespace: "prod".into(),
            service: "api".into(),
            height: 7,
            timestamp_ms: 1_000,
            epoch: 0,
            state_root: Digest([0; 32]),
            record: instances.map(|instances| ServiceRecord {
                namespace: "prod".into(),
                service: "api".into(),
                instances,
            }),
        }
    }

    fn q(name: &str) -> (QueryName, Name) {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        let parsed = super::super::name::parse_name(&labels).unwrap().unwrap();
        (parsed, Name::from_ascii(name).unwrap())
    }

    fn rdatas(o: &Outcome) -> Vec<String> {
        match o {
            Outcome::Records { answers, .. } => {
                answers.iter().map(|r| r.data().to_string()).collect()
            }
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn only_passing_instances_with_live_leases_are_answered() {
        let s = service(Some(vec![
            inst("a", &[("10.0.0.1", 80)], Health::Passing, 2_000),
            inst("b", &[("10.0.0.2", 80)], Health::Failing, 2_000),
            inst("c", &[("10.0.0.3", 80)], Health::Passing, 1_000),
            inst(
                "d",
                &[("10.0.0.1", 81), ("db.example", 82)],
                Health::Passing,
                2_000,
            ),
        ]));
        let (qn, name) = q("api.prod.palisade.");
        assert_eq!(
            rdatas(&answer(&qn, &name, RecordType::A, &s, 5, 16)),
            vec!["10.0.0.1"]
        );
        let (qn, name) = q("_api._tcp.prod.palisade.");
        let o = answer(&qn, &name, RecordType::SRV, &s, 5, 16);
        assert_eq!(
            rdatas(&o),
            vec![
                "0 1 80 a.api.prod.palisade.",
                "0 1 81 d.api.prod.palisade.",
                "0 1 82 db.example."
            ]
        );
        let Outcome::Records { additionals, .. } = &o else {
            panic!()
        };
        assert_eq!(additionals.len(), 2);
        assert!(additionals.iter().all(|r| r.ttl() == 5));
        // An instance known but failing: the name exists, no data.
        let (qn, name) = q("b.api.prod.palisade.");
        assert_eq!(
            rdatas(&answer(&qn, &name, RecordType::A, &s, 5, 16)),
            Vec::<String>::new()
        );
        let (qn, name) = q("zz.api.prod.palisade.");
        assert_eq!(
            answer(&qn, &name, RecordType::A, &s, 5, 16),
            Outcome::NxDomain
        );
    }

    #[test]
    fn a_verified_absence_is_nxdomain_and_large_answers_are_truncated() {
        let (qn, name) = q("api.prod.palisade.");
        assert_eq!(
            answer(&qn, &name, RecordType::A, &service(None), 5, 16),
            Outcome::NxDomain
        );
        let many: Vec<_> = (0..40)
            .map(|i| {
                inst(
                    &format!("i{i}"),
                    &[(&format!("10.0.1.{i}"), 80)],
                    Health::Passing,
                    9_999,
                )
            })
            .collect();
        match answer(&qn, &name, RecordType::A, &service(Some(many)), 5, 16) {
            Outcome::Records {
                answers, truncated, ..
            } => {
                assert_eq!(answers.len(), 16);
                assert!(truncated);
            }
            o => panic!("{o:?}"),
        }
    }
}
