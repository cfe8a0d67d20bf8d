//! The `kube-nftpolicy` binary: parse arguments, run the command.

fn main() {}
