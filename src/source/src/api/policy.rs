//! NetworkPolicy (`networking.k8s.io/v1`) → `model::Policy`, validated as
//! the API server validates it: selectors, policyTypes, peers, ipBlocks,
//! ports. Every error names its field path.

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{validate, Invalid};
use crate::issue::Issue;
use nftpolicy_core::model::{
    NamespaceScope, Peer, Policy, PolicyTypes, PortRef, PortSpec, Requirement, Rule, Selector,
};

/// A NetworkPolicy; `namespace` (defaulted) and `name` come from its metadata.
pub(super) fn policy(
    namespace: &str,
    name: &str,
    np: &net::NetworkPolicy,
) -> Result<Policy, Invalid> {
    let default = net::NetworkPolicySpec::default();
    let spec = np.spec.as_ref().unwrap_or(&default);
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(s, "spec.podSelector")?,
        None => Selector::everything(),
    };
    let ingress = spec.ingress.iter().flatten().enumerate().map(|(i, r)| {
        let field = format!("spec.ingress[{i}]");
        rule(r.from.as_deref(), r.ports.as_deref(), &field, "from")
    });
    let egress = spec.egress.iter().flatten().enumerate().map(|(i, r)| {
        let field = format!("spec.egress[{i}]");
        rule(r.to.as_deref(), r.ports.as_deref(), &field, "to")
    });
    Ok(Policy {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        pod_selector,
        policy_types: policy_types(spec.policy_types.as_deref())?,
        ingress: ingress.collect::<Result<_, _>>()?,
        egress: egress.collect::<Result<_, _>>()?,
    })
}

/// `spec.policyTypes`: `None` when omitted or empty (the API server then
/// defaults it from the rules, which `Policy::isolates` does). At most two
/// entries, as the API server says (`[Ingress, Ingress]` passes there too).
fn policy_types(types: Option<&[String]>) -> Result<Option<PolicyTypes>, Invalid> {
    let Some(types) = types.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if types.len() > 2 {
        let issue = Issue::PolicyTypeCount(types.len());
        return Err(Invalid::at("spec.policyTypes", issue));
    }
    let mut out = PolicyTypes::default();
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => out.ingress = true,
            "Egress" => out.egress = true,
            other => {
                let field = format!("spec.policyTypes[{i}]");
                return Err(Invalid::at(field, Issue::PolicyType(other.to_owned())));
            }
        }
    }
    Ok(Some(out))
}

/// One ingress or egress rule; `peers_key` is `from` or `to`.
fn rule(
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    field: &str,
    peers_key: &str,
) -> Result<Rule, Invalid> {
    let peers = peers.unwrap_or_default().iter().enumerate();
    let ports = ports.unwrap_or_default().iter().enumerate();
    Ok(Rule {
        peers: peers
            .map(|(j, p)| peer(p, &format!("{field}.{peers_key}[{j}]")))
            .collect::<Result<_, _>>()?,
        ports: ports
            .map(|(j, p)| port(p, &format!("{field}.ports[{j}]")))
            .collect::<Result<_, _>>()?,
    })
}

/// One peer: pods (by pod and/or namespace selector) or an ipBlock.
fn peer(p: &net::NetworkPolicyPeer, field: &str) -> Result<Peer, Invalid> {
    let pods_at = || format!("{field}.podSelector");
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (Some(block), None, None) => ip_block(block, &format!("{field}.ipBlock")),
        (Some(_), _, _) => Err(Invalid::at(field, Issue::IpBlockWithSelector)),
        (None, None, None) => Err(Invalid::at(field, Issue::EmptyPeer)),
        (None, Some(ns), pods) => Ok(Peer::Pods {
            namespaces: NamespaceScope::Matching(selector(
                ns,
                &format!("{field}.namespaceSelector"),
            )?),
            pods: match pods {
                Some(pods) => selector(pods, &pods_at())?,
                None => Selector::everything(),
            },
        }),
        (None, None, Some(pods)) => Ok(Peer::Pods {
            namespaces: NamespaceScope::Own,
            pods: selector(pods, &pods_at())?,
        }),
    }
}

fn ip_block(block: &net::IPBlock, field: &str) -> Result<Peer, Invalid> {
    let cidr = validate::cidr(&block.cidr).map_err(|i| Invalid::at(format!("{field}.cidr"), i))?;
    let except = block
        .except
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, e)| {
            validate::except(&cidr, e).map_err(|i| Invalid::at(format!("{field}.except[{k}]"), i))
        })
        .collect::<Result<_, _>>()?;
    Ok(Peer::IpBlock { cidr, except })
}

/// One entry of `ports`: protocol (TCP by default), port number or name,
/// and `endPort`, which needs a numeric port and may not be below it.
fn port(p: &net::NetworkPolicyPort, field: &str) -> Result<PortSpec, Invalid> {
    let at = |sub: &str| format!("{field}.{sub}");
    let protocol =
        validate::protocol(p.protocol.as_deref()).map_err(|i| Invalid::at(at("protocol"), i))?;
    let port = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => Some(PortRef::Number(
            validate::port_number(*n).map_err(|i| Invalid::at(at("port"), i))?,
        )),
        Some(IntOrString::String(s)) => Some(PortRef::Name(
            validate::port_name(s).map_err(|i| Invalid::at(at("port"), i))?,
        )),
    };
    let end_port = match p.end_port {
        None => None,
        Some(end) => {
            let end_port = validate::port_number(end).map_err(|i| Invalid::at(at("endPort"), i))?;
            let issue = match &port {
                Some(PortRef::Number(start)) if end_port >= *start => None,
                Some(PortRef::Number(start)) => Some(Issue::EndPortBelow {
                    end_port: end,
                    port: start.get(),
                }),
                Some(PortRef::Name(name)) => Some(Issue::EndPortNamed {
                    end_port: end,
                    name: name.clone(),
                }),
                None => Some(Issue::EndPortWithoutPort(end)),
            };
            if let Some(issue) = issue {
                return Err(Invalid::at(at("endPort"), issue));
            }
            Some(end_port)
        }
    };
    Ok(PortSpec {
        protocol,
        port,
        end_port,
    })
}

/// A label selector: matchLabels AND matchExpressions.
fn selector(s: &LabelSelector, field: &str) -> Result<Selector, Invalid> {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default().into(),
        match_expressions: Vec::new(),
    };
    for (i, req) in s.match_expressions.iter().flatten().enumerate() {
        let at = |sub: &str| format!("{field}.matchExpressions[{i}].{sub}");
        if req.key.is_empty() {
            return Err(Invalid::at(at("key"), Issue::EmptyKey));
        }
        let op = validate::requirement(&req.operator, req.values.as_deref())
            .map_err(|(sub, issue)| Invalid::at(at(sub), issue))?;
        out.match_expressions.push(Requirement {
            key: req.key.clone(),
            op,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftpolicy_core::model::Operator;
    use serde_json::{json, Value};

    fn spec(spec: Value) -> Result<Policy, Invalid> {
        let np: net::NetworkPolicy =
            serde_json::from_value(json!({"spec": spec})).expect("a NetworkPolicy");
        policy("shop", "p", &np)
    }

    #[test]
    fn peers() {
        let everything = Selector::everything();
        let web = Selector::labels([("app", "web")]);
        let prod = Selector::labels([("env", "prod")]);
        // (case, peer, expected)
        let cases = [
            (
                "podSelector only: own namespace",
                json!({"podSelector": {"matchLabels": {"app": "web"}}}),
                Peer::Pods {
                    namespaces: NamespaceScope::Own,
                    pods: web.clone(),
                },
            ),
            (
                "namespaceSelector only: every pod there",
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
                Peer::Pods {
                    namespaces: NamespaceScope::Matching(prod.clone()),
                    pods: everything,
                },
            ),
            (
                "both: AND",
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}},
                       "podSelector": {"matchLabels": {"app": "web"}}}),
                Peer::Pods {
                    namespaces: NamespaceScope::Matching(prod),
                    pods: web,
                },
            ),
            (
                "ipBlock",
                json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}),
                Peer::IpBlock {
                    cidr: "10.0.0.0/8".parse().unwrap(),
                    except: vec!["10.1.0.0/16".parse().unwrap()],
                },
            ),
        ];
        for (name, peer, want) in cases {
            let p = spec(json!({"ingress": [{"from": [peer]}]})).expect(name);
            assert_eq!(p.ingress[0].peers, vec![want], "case: {name}");
        }
    }

    #[test]
    fn defaults() {
        let p = spec(json!({"egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]})).unwrap();
        assert!(
            p.pod_selector.is_everything(),
            "missing podSelector selects all"
        );
        assert_eq!(p.policy_types, None);
        let twice = spec(json!({"policyTypes": ["Ingress", "Ingress"]})).unwrap();
        assert!(
            twice.policy_types.is_some(),
            "a repeated type passes, as in the API"
        );
        assert!(p.egress[0].peers.is_empty());
        let want = PortSpec {
            protocol: nftpolicy_core::model::Protocol::Udp,
            port: Some(PortRef::Name("dns".into())),
            end_port: None,
        };
        assert_eq!(p.egress[0].ports, vec![want]);
        let p = spec(json!({"podSelector": {"matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["db"]}]}}))
        .unwrap();
        let want = Selector::everything().with("tier", Operator::NotIn(["db".into()].into()));
        assert_eq!(p.pod_selector, want);
    }

    #[test]
    fn errors_name_the_field() {
        // (case, spec, field, message substring)
        let cases = [
            (
                "policy type",
                json!({"policyTypes": ["Ingress", "Both"]}),
                "spec.policyTypes[1]",
                "Both",
            ),
            (
                "three policy types",
                json!({"policyTypes": ["Ingress", "Egress", "Ingress"]}),
                "spec.policyTypes",
                "at most two",
            ),
            (
                "empty peer",
                json!({"ingress": [{"from": [{}]}]}),
                "spec.ingress[0].from[0]",
                "needs",
            ),
            (
                "ipBlock with selector",
                json!({"egress": [{"to": [
                    {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
                "spec.egress[0].to[0]",
                "combined",
            ),
            (
                "end port without port",
                json!({"ingress": [{"ports": [{"endPort": 90}]}]}),
                "spec.ingress[0].ports[0].endPort",
                "numeric",
            ),
            (
                "end port too big",
                json!({"ingress": [{"ports": [{"port": 80, "endPort": 65536}]}]}),
                "spec.ingress[0].ports[0].endPort",
                "out of range",
            ),
            (
                "empty key",
                json!({"podSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}}),
                "spec.podSelector.matchExpressions[0].key",
                "empty",
            ),
            (
                "namespace selector operator",
                json!({"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "a", "operator": "in", "values": ["x"]}]}}]}]}),
                "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator",
                "\"in\"",
            ),
        ];
        for (name, s, field, msg) in cases {
            let err = spec(s).expect_err(name);
            assert_eq!(err.field, field, "case: {name}");
            assert!(
                err.issue.to_string().contains(msg),
                "case: {name}: {}",
                err.issue
            );
        }
    }
}
