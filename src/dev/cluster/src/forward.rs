//! The API server as a node sees it: a TCP forwarder that listens on
//! `127.0.0.1:<port>` inside a node's network namespace and connects each
//! connection to the API server on the runner's own loopback.
//!
//! The control plane listens on the loopback of the root namespace; the
//! processes of a node (our agent, run as the DaemonSet runs it, in the
//! node's network) have their own loopback. A socket belongs to the
//! namespace it was created in, so the listener is made by a thread that
//! entered the node's namespace, and the outgoing connections by the
//! runner's threads, which never leave the root namespace. No packet
//! crosses between namespaces: only bytes, in this process.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use crate::Error;

/// Starts forwarding `listen` (in `netns`) to `target` (here), on threads
/// that live as long as the process.
pub fn start(netns: &str, listen: SocketAddr, target: SocketAddr) -> Result<(), Error> {
    let listener = nftpolicy_lab::netns::in_netns(netns, move || {
        TcpListener::bind(listen).map_err(|source| nftpolicy_lab::LabError::Io {
            context: format!("bind {listen}"),
            source,
        })
    })
    .map_err(|e| Error::Other(format!("API forwarder in {netns}: {e}")))?;
    thread::Builder::new()
        .name(format!("forward-{netns}"))
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = thread::Builder::new()
                    .name("forward-conn".into())
                    .spawn(move || {
                        if let Err(e) = pump(conn, target) {
                            tracing::debug!(error = %e, "forwarded connection ended");
                        }
                    });
            }
        })
        .map_err(|e| Error::Other(format!("spawn forwarder: {e}")))?;
    Ok(())
}

/// Copies bytes both ways until either side closes.
fn pump(inside: TcpStream, target: SocketAddr) -> io::Result<()> {
    let outside = TcpStream::connect(target)?;
    let (mut in_r, mut out_w) = (inside.try_clone()?, outside.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut in_r, &mut out_w);
        let _ = out_w.shutdown(Shutdown::Write);
    });
    let (mut out_r, mut in_w) = (outside, inside);
    let _ = io::copy(&mut out_r, &mut in_w);
    let _ = in_w.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
