//! The `apply` and `cleanup` commands against a real kernel, in a network
//! namespace this test creates and removes: the listing equals `render`,
//! another table in the namespace is left byte for byte as it was, and
//! `cleanup` removes our table only. Needs root (CI runs as root).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kube-nftpolicy");

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn nft(ns: &str, args: &[&str]) -> String {
    String::from_utf8(
        run(Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .args(args))
        .stdout,
    )
    .unwrap()
}

#[test]
fn apply_and_cleanup_touch_our_table_only() {
    nftpolicy_lab::kernel_test!("cli_kernel::apply_and_cleanup_touch_our_table_only");
    let ns = Netns(format!("kn-cli-{}", std::process::id()));
    run(Command::new("ip").args(["netns", "add", &ns.0]));
    nft(&ns.0, &["add table ip nat { chain pre { type nat hook prerouting priority dstnat; ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.1.10:80; }; }"]);
    let theirs = nft(&ns.0, &["list", "table", "ip", "nat"]);

    let apply = || {
        run(Command::new(BIN).args([
            "apply",
            "-f",
            "examples/calico",
            "--node",
            "node-1",
            "--netns",
            &ns.0,
        ]))
    };
    apply();
    apply();
    let rendered = String::from_utf8(
        run(Command::new(BIN).args(["render", "-f", "examples/calico", "--node", "node-1"])).stdout,
    )
    .unwrap();
    assert_eq!(
        nft(&ns.0, &["list", "table", "inet", "kube-nftpolicy"]),
        rendered,
        "the kernel lists what render prints"
    );
    assert_eq!(
        nft(&ns.0, &["list", "table", "ip", "nat"]),
        theirs,
        "apply leaves other tables alone"
    );

    let dry = run(Command::new(BIN).args([
        "apply",
        "-f",
        "examples/calico",
        "--node",
        "node-2",
        "--netns",
        &ns.0,
        "--dry-run",
    ]));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("table inet kube-nftpolicy"));
    assert_eq!(
        nft(&ns.0, &["list", "table", "inet", "kube-nftpolicy"]),
        rendered,
        "--dry-run changes nothing"
    );

    run(Command::new(BIN).args(["cleanup", "--netns", &ns.0]));
    assert_eq!(
        nft(&ns.0, &["list", "tables"]),
        "table ip nat\n",
        "cleanup removes our table only"
    );
    assert_eq!(nft(&ns.0, &["list", "table", "ip", "nat"]), theirs);
    run(Command::new(BIN).args(["cleanup", "--netns", &ns.0]));
}
