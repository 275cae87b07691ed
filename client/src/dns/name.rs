//! Which question a DNS name asks.

/// A name of the `palisade.` zone, split into Palisade names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueryName {
    /// `SVC.NS.palisade.`
    Service {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
    },
    /// `_SVC._tcp.NS.palisade.`
    Srv {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
    },
    /// `INSTANCE.SVC.NS.palisade.`
    Instance {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// Instance id.
        instance: String,
    },
}

impl QueryName {
    /// The service whose verified record answers it.
    pub fn service(&self) -> (&str, &str) {
        match self {
            QueryName::Service { namespace, service }
            | QueryName::Srv { namespace, service }
            | QueryName::Instance {
                namespace, service, ..
            } => (namespace, service),
        }
    }
}

/// The zone's own label.
pub(crate) const ZONE: &str = "palisade";

/// Parse the labels of a query name (lowercased, root label left out):
/// `None` when the name is outside the zone, `Some(None)` when it is in the
/// zone but names nothing Palisade can hold, else the question.
pub fn parse_name(labels: &[&str]) -> Option<Option<QueryName>> {
    let (last, rest) = labels.split_last()?;
    if !last.eq_ignore_ascii_case(ZONE) {
        return None;
    }
    // A Palisade name is 1..=63 of [a-z0-9_-.] starting with [a-z0-9]; a DNS
    // label cannot hold a '.', so only names without one are reachable.
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let q = match rest {
        [svc, ns] if ok(svc) && ok(ns) => QueryName::Service {
            namespace: ns.to_string(),
            service: svc.to_string(),
        },
        [svc, proto, ns] if proto.eq_ignore_ascii_case("_tcp") => match svc.strip_prefix('_') {
            Some(s) if ok(s) && ok(ns) => QueryName::Srv {
                namespace: ns.to_string(),
                service: s.to_string(),
            },
            _ => return Some(None),
        },
        [inst, svc, ns] if ok(inst) && ok(svc) && ok(ns) => QueryName::Instance {
            namespace: ns.to_string(),
            service: svc.to_string(),
            instance: inst.to_string(),
        },
        _ => return Some(None),
    };
    Some(Some(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Option<Option<QueryName>> {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        parse_name(&labels)
    }

    #[test]
    fn the_three_shapes_parse_and_everything_else_is_outside_or_nothing() {
        assert_eq!(
            p("api.prod.palisade."),
            Some(Some(QueryName::Service {
                namespace: "prod".into(),
                service: "api".into()
            }))
        );
        assert_eq!(
            p("_api._tcp.prod.palisade."),
            Some(Some(QueryName::Srv {
                namespace: "prod".into(),
                service: "api".into()
            }))
        );
        assert_eq!(
            p("api-1.api.prod.palisade."),
            Some(Some(QueryName::Instance {
                namespace: "prod".into(),
                service: "api".into(),
                instance: "api-1".into()
            }))
        );
        assert_eq!(p("example.com."), None);
        assert_eq!(p("palisade.example."), None);
        assert_eq!(p("palisade."), Some(None));
        assert_eq!(p("prod.palisade."), Some(None));
        assert_eq!(p("_api._udp.prod.palisade."), Some(None));
        assert_eq!(p("_-x._tcp.prod.palisade."), Some(None));
        assert_eq!(p("a.b.c.d.palisade."), Some(None));
        assert_eq!(p("-bad.prod.palisade."), Some(None));
    }
}
