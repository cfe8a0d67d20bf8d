//! The resources the agent lists and watches, and where the API serves
//! them: shared by the in-process fake API of the tests and the HTTP fake
//! of `examples/scale_agent.rs`.

/// The resources the agent lists and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    /// `v1` namespaces.
    Namespaces = 0,
    /// `v1` pods.
    Pods = 1,
    /// `networking.k8s.io/v1` networkpolicies.
    Policies = 2,
    /// `v1` nodes (the gate's pod CIDRs).
    Nodes = 3,
}

impl Res {
    /// Every resource.
    pub const ALL: [Res; 4] = [Res::Namespaces, Res::Pods, Res::Policies, Res::Nodes];

    pub fn path(self) -> &'static str {
        match self {
            Res::Namespaces => "/api/v1/namespaces",
            Res::Pods => "/api/v1/pods",
            Res::Policies => "/apis/networking.k8s.io/v1/networkpolicies",
            Res::Nodes => "/api/v1/nodes",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Res::Namespaces => "Namespace",
            Res::Pods => "Pod",
            Res::Policies => "NetworkPolicy",
            Res::Nodes => "Node",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Res::Policies => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    pub fn of_kind(kind: &str) -> Res {
        *Res::ALL
            .iter()
            .find(|r| r.kind() == kind)
            .expect("a watched kind")
    }
}
