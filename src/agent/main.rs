//! The `kube-nftpolicy` binary: parse arguments, run the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    kube_nftpolicy::cli::run(kube_nftpolicy::cli::Cli::parse())
}
