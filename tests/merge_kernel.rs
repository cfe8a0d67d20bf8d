//! The merged pod chain with real packets: several policies select one
//! server, two of them allow every port from small peer sets (one union
//! set), two allow overlapping TCP port ranges (cut into disjoint ranges,
//! the shared one looking up a union). Every pod probes every pod on the
//! ports at and around the range boundaries, over the netlink dataplane.

use std::time::Duration;

use nftpolicy_core::model::{Protocol, Selector};
use nftpolicy_lab::{Cluster, Proto, Serve, Stack};
use nftpolicy_testkit::*;

const PORTS: [(Proto, u16); 6] = [
    (Proto::Tcp, 999),
    (Proto::Tcp, 1000),
    (Proto::Tcp, 1500),
    (Proto::Tcp, 1501),
    (Proto::Tcp, 2001),
    (Proto::Udp, 1500),
];

fn serve() -> Vec<Serve<'static>> {
    PORTS
        .iter()
        .map(|&(proto, port)| Serve {
            proto,
            port,
            name: None,
        })
        .collect()
}

fn web_policy(name: &str) -> nftpolicy_core::model::Policy {
    policy("x", name).select(Selector::labels([("app", "server")]))
}

#[test]
fn merged_allows_and_disjoint_port_ranges_enforce_each_policy() {
    nftpolicy_lab::kernel_test!(
        "merge_kernel::merged_allows_and_disjoint_port_ranges_enforce_each_policy"
    );
    let mut c = Cluster::new().expect("lab cluster");
    c.add_namespace("x", &[]);
    let serve = serve();
    let mut hosts = Vec::new();
    for (node, app) in [
        (1, "server"),
        (2, "a"),
        (1, "b"),
        (2, "d"),
        (2, "e"),
        (1, "stranger"),
    ] {
        let h = c
            .add_pod(node, "x", app, &[("app", app)], Stack::V4, &serve)
            .expect("pod");
        hosts.push((app, h.name().to_owned()));
    }
    c.set_policies([
        web_policy("range").ingress(rule().pods(Selector::labels([("app", "a")])).port_range(
            Protocol::Tcp,
            1000,
            2000,
        )),
        web_policy("single").ingress(
            rule()
                .pods(Selector::labels([("app", "b")]))
                .port(Protocol::Tcp, 1500),
        ),
        web_policy("from-d").ingress(rule().pods(Selector::labels([("app", "d")]))),
        web_policy("from-e").ingress(rule().pods(Selector::labels([("app", "e")]))),
    ]);
    // The shape under test: two unions (d+e on every port, a+b on 1500)
    // and the disjoint ranges around 1500.
    let desired = c.desired("node1");
    let unions = desired
        .sets
        .iter()
        .filter(|s| s.name.starts_with("allow-"))
        .count();
    assert_eq!(
        unions,
        2,
        "{}",
        nftpolicy_core::ruleset::render::render(&desired)
    );
    c.apply().expect("apply");

    let got = c.matrix(&PORTS, Duration::from_millis(400));
    let app_of = |host: &str| {
        hosts
            .iter()
            .find(|(_, h)| h == host)
            .map(|(app, _)| *app)
            .expect("a pod of the test")
    };
    let want = got.expect(|k| {
        if app_of(&k.to) != "server" || k.from == k.to {
            // Nothing isolates the other pods; a pod reaches itself over
            // its own loopback, which no hook of ours sees.
            return true;
        }
        let tcp = k.proto == Proto::Tcp;
        match app_of(&k.from) {
            "a" => tcp && (1000..=2000).contains(&k.port),
            "b" => tcp && k.port == 1500,
            "d" | "e" => true,
            _ => false,
        }
    });
    if let Err(e) = got.check(&want) {
        panic!("{e}");
    }
}
