//! Whether kernel tests can run here: they need root (network namespaces,
//! nf_tables). A plain `cargo test` as a user skips them with a message on
//! stderr; the project's test command sets `KNP_REQUIRE_KERNEL=1`, under
//! which a missing privilege fails the test instead, so CI (root) never
//! skips one silently.

use std::io::Write;

/// The variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "KNP_REQUIRE_KERNEL";

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `true` when the kernel test `what` can run. Otherwise: panics if
/// `KNP_REQUIRE_KERNEL` is set, or writes why it is skipped to stderr
/// (past the test harness's capture, so `cargo test` shows it) and
/// returns `false`.
pub fn kernel_available(what: &str) -> bool {
    if is_root() {
        return true;
    }
    let required = std::env::var_os(REQUIRE_VAR).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{what}: needs root (network namespaces, nf_tables) and {REQUIRE_VAR} is set; \
         run the test command as root: sudo ./scripts/test.sh"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {what}: needs root (network namespaces, nf_tables); \
         run `sudo ./scripts/test.sh` to include it"
    );
    false
}

/// Returns from the calling test when [`kernel_available`] says no.
#[macro_export]
macro_rules! kernel_test {
    ($what:expr) => {
        if !$crate::gate::kernel_available($what) {
            return;
        }
    };
}
