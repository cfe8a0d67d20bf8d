//! The `kube-nftpolicy` binary: parse arguments, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    one_malloc_arena();
    kube_nftpolicy::cli::run(kube_nftpolicy::cli::Cli::parse())
}

/// Asks glibc's malloc for one arena instead of up to eight per core.
///
/// The agent's threads hand objects to each other: the watchers convert
/// pods on tokio's workers, the dataplane thread resolves and builds from
/// them and frees what the previous sync held. With an arena per thread,
/// memory freed in one stays resident and unused by the others. At
/// 100,000 pods / 10,000 policies (`scripts/scale.sh`) one arena gives
/// VmHWM 111 MiB after the first apply instead of 121, and 125 MiB after
/// six changes instead of 150, for the same times (the threads that
/// allocate are few, and rarely at once). `MALLOC_ARENA_MAX` set in the
/// environment wins: glibc has read it already, and this leaves it be.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt sets a parameter of the C allocator and touches no
    // Rust memory; it runs first in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
