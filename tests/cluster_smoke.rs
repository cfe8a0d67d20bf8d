//! The local cluster end to end: kubectl apply of examples/cluster/, the
//! agent enforcing it with real packets across the bridge and across
//! nodes, in both families, and the DaemonSet's probes and metrics port
//! answering inside the node, as the kubelet asks them.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::time::Duration;

use cluster_support::Cluster;

const T: Duration = Duration::from_secs(10);

#[test]
fn cluster_example_is_enforced_and_the_agent_answers_its_probes() {
    nftpolicy_lab::kernel_test!("cluster_smoke");
    let c = Cluster::up(0, 2, "");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/cluster/00-demo.yaml"
    ))
    .unwrap();
    c.apply(&example);
    c.wait_running("demo", &["web", "client", "stranger"], T);
    c.expect(
        "before any policy",
        "demo/stranger",
        "demo/web",
        "80",
        true,
        T,
    );
    c.expect(
        "before any policy",
        "demo/client",
        "demo/web",
        "80",
        true,
        T,
    );

    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/cluster/10-web-from-client.yaml"
    ))
    .unwrap();
    c.apply(&policy);
    c.expect(
        "web-from-client",
        "demo/stranger",
        "demo/web",
        "80",
        false,
        T,
    );
    c.expect("web-from-client", "demo/client", "demo/web", "80", true, T);

    c.k(&["-n", "demo", "delete", "networkpolicy", "web-from-client"]);
    c.expect("policy deleted", "demo/stranger", "demo/web", "80", true, T);

    // The DaemonSet's livenessProbe, readinessProbe and metrics port.
    for n in 1..=2 {
        assert_eq!(c.agent_get(n, "/healthz").0, 200, "node{n} /healthz");
        assert_eq!(c.agent_get(n, "/readyz").0, 200, "node{n} /readyz");
        let (code, body) = c.agent_get(n, "/metrics");
        assert_eq!(code, 200);
        assert!(
            body.contains("kube_nftpolicy_syncs_total{result=\"success\"}"),
            "node{n}: {body}"
        );
        assert_eq!(
            c.metric(n, "kube_nftpolicy_errors_total{kind=\"watch\"}"),
            0.0,
            "node{n}: no watch errors"
        );
    }
}
