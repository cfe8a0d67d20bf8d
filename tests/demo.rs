//! The Calico demo (`examples/calico_demo.rs`, included here as a module):
//! its lab run must match the tutorial at every step, and the manifest
//! directories must hold the states the README and the demo say they hold.
//! The lab test needs root (CI runs as root); it does not skip without it.

use std::path::PathBuf;

use nftpolicy_source::files;

#[allow(dead_code)]
#[path = "../examples/calico_demo.rs"]
mod calico_demo;

use calico_demo::{manifest_dir, manifests_after, STEPS};

fn load(paths: &[PathBuf]) -> files::Loaded {
    let loaded = files::load(paths).expect("the manifests can be read");
    assert!(
        loaded.problems.is_empty(),
        "problems: {:#?}",
        loaded.problems
    );
    assert!(loaded.ignored.is_empty(), "ignored: {:?}", loaded.ignored);
    loaded
}

#[test]
fn calico_demo_matches_the_tutorial() {
    nftpolicy_lab::kernel_test!("demo::calico_demo_matches_the_tutorial");
    let outcome = calico_demo::run().expect("the lab is built and probed");
    assert_eq!(outcome.steps, STEPS.len());
    assert_eq!(
        outcome.probes,
        STEPS.len() * calico_demo::FLOWS.len() * 2,
        "every flow probed over IPv4 and IPv6 at every step"
    );
    assert_eq!(
        outcome.failures, 0,
        "the demo's expectations failed; its output above says where"
    );
    assert!(
        outcome.elapsed.as_secs() < 30,
        "the demo took {:?}",
        outcome.elapsed
    );
}

/// README and tests/cli_kernel.rs use `examples/calico/` as the state after
/// "allow ingress to nginx" (step 2); the demo reaches it file by file.
#[test]
fn examples_calico_is_the_state_after_allow_ingress_to_nginx() {
    let loaded = load(&[manifest_dir()]);
    assert_eq!(
        Some(loaded.snapshot),
        manifests_after(2).ok(),
        "examples/calico/ differs from the demo's step 2"
    );
    let step2 = manifests_after(2).unwrap();
    assert_eq!(
        step2
            .policies
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        [
            "advanced-policy-demo/access-nginx",
            "advanced-policy-demo/default-deny-ingress"
        ]
    );
    let on_node_1: Vec<String> = step2
        .pods
        .values()
        .filter(|p| p.node.as_deref() == Some("node-1"))
        .map(|p| p.key().to_string())
        .collect();
    assert_eq!(
        on_node_1,
        ["advanced-policy-demo/access", "advanced-policy-demo/nginx"]
    );
}

/// Both directories together load without problems and are the final state,
/// kube-system labelled as the tutorial labels it.
#[test]
fn examples_calico_with_egress_is_the_final_state() {
    let loaded = load(&[manifest_dir(), manifest_dir().join("egress")]);
    let last = manifests_after(STEPS.len() - 1).unwrap();
    assert_eq!(loaded.snapshot, last);
    assert_eq!(last.policies.len(), 5);
    assert_eq!(
        last.namespaces["kube-system"]
            .labels
            .get("name")
            .map(String::as_str),
        Some("kube-system")
    );
}

/// Every step file adds what its step says and loads on its own.
#[test]
fn every_step_file_loads_without_problems() {
    for step in &STEPS {
        load(&[manifest_dir().join(step.file)]);
    }
}
