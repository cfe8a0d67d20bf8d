//! `explain` against a live cluster, and `observe` on a node, on the local
//! test cluster (id 6 of tests/cluster_support).
//!
//! - `kube-nftpolicy explain` without `-f` lists namespaces, pods and
//!   networkpolicies through the kubeconfig (read-only) and must print
//!   exactly what `explain -f` prints for `kubectl get ns,pods,networkpolicies
//!   -A -o yaml` of the same moment, for allowed and denied flows, with the
//!   same exit code.
//! - The agents run with their default drop logging: a denied request
//!   shows up in `kube-nftpolicy observe` on the destination's node with
//!   both pods' names and the isolating policy.

#[path = "cluster_support/mod.rs"]
mod cluster_support;

use std::process::{Command, Output};
use std::time::Duration;

use cluster_support::Cluster;

const T: Duration = Duration::from_secs(10);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kube-nftpolicy"))
}

fn explain(args: &[&str], source: &[&str]) -> Output {
    bin()
        .arg("explain")
        .args(source)
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run kube-nftpolicy explain")
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/examples/cluster/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn explain_live_answers_as_offline_and_observe_names_the_drop() {
    nftpolicy_lab::kernel_test!("cluster_explain");
    let c = Cluster::up(6, 2, "");
    c.apply(&example("00-demo.yaml"));
    c.apply(&example("10-web-from-client.yaml"));
    c.wait_running("demo", &["web", "client", "stranger"], T);
    c.expect(
        "web-from-client",
        "demo/stranger",
        "demo/web",
        "80",
        false,
        T,
    );

    let dump = c.k(&["get", "ns,pods,networkpolicies", "-A", "-o", "yaml"]);
    let file = c.place.dir.join("explain-dump.yaml");
    std::fs::write(&file, &dump).unwrap();
    let kubeconfig = c.kubeconfig.to_string_lossy().into_owned();
    let file = file.to_string_lossy().into_owned();
    // (case, flow, exit code)
    let cases: [(&str, [&str; 6], i32); 4] = [
        (
            "client allowed",
            ["--from", "demo/client", "--to", "demo/web", "--port", "80"],
            0,
        ),
        (
            "stranger denied",
            [
                "--from",
                "demo/stranger",
                "--to",
                "demo/web",
                "--port",
                "80",
            ],
            5,
        ),
        (
            "wrong port",
            [
                "--from",
                "demo/client",
                "--to",
                "demo/web",
                "--port",
                "81/tcp",
            ],
            5,
        ),
        (
            "not isolated",
            [
                "--from",
                "demo/web",
                "--to",
                "demo/client",
                "--port",
                "53/udp",
            ],
            0,
        ),
    ];
    for (case, flow, code) in cases {
        let live = explain(&flow, &["--kubeconfig", &kubeconfig]);
        let offline = explain(&flow, &["-f", &file]);
        let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            live.status.code(),
            Some(code),
            "case {case}: {}{}",
            text(&live),
            String::from_utf8_lossy(&live.stderr)
        );
        assert_eq!(offline.status.code(), Some(code), "case {case}");
        assert_eq!(text(&live), text(&offline), "case {case}");
        assert!(
            text(&live).contains("\"allowed\""),
            "case {case}: {}",
            text(&live)
        );
    }

    // observe on web's node: a denied request of the stranger is named.
    let node = c.k(&[
        "get",
        "pod",
        "-n",
        "demo",
        "web",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    let n: u8 = node
        .trim()
        .rsplit("node")
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("node number of {node:?}"));
    let observer = Command::new("ip")
        .args(["netns", "exec", &c.node_netns(n), "timeout", "20"])
        .arg(env!("CARGO_BIN_EXE_kube-nftpolicy"))
        .args([
            "observe",
            "--pod",
            "demo/web",
            "--verdict",
            "drop",
            "--count",
            "1",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run observe in the node");
    // Until the stream is open, requests may go unseen: retry a few times.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        let _ = c.request(
            "demo/stranger",
            "demo/web",
            "80",
            false,
            Duration::from_millis(300),
        );
        if c.metric(n, "kube_nftpolicy_log_records_total{verdict=\"drop\"}") > 0.0 {
            break;
        }
    }
    let out = observer.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "observe: {line}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON event");
    assert_eq!(e["verdict"], "drop", "{e}");
    assert_eq!(e["direction"], "ingress", "{e}");
    assert_eq!(
        (&e["src"]["namespace"], &e["src"]["pod"]),
        (&"demo".into(), &"stranger".into()),
        "{e}"
    );
    assert_eq!(
        (&e["dst"]["pod"], &e["dst"]["port"]),
        (&"web".into(), &80.into()),
        "{e}"
    );
    assert_eq!(
        e["policies"],
        serde_json::json!(["demo/web-from-client"]),
        "{e}"
    );
    assert!(
        c.metric(
            n,
            "kube_nftpolicy_drops_total{namespace=\"demo\",policy=\"web-from-client\"}"
        ) >= 1.0
    );
}
