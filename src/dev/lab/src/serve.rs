//! Echo servers: TCP and UDP listeners inside a lab namespace that answer
//! every request with the host's name.
//!
//! The sockets are created by a thread that entered the namespace (a socket
//! belongs to the namespace it was created in, whichever thread uses it
//! later), bound to every address of the namespace in both families (UDP
//! replies therefore leave from the address the client used, which conntrack
//! needs). Each socket gets its own thread; blocking calls time out every
//! [`SERVER_POLL`] so that threads notice the stop flag, and stopping joins them all.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{netns, Host, Lab, LabError, Proto};

/// How often blocked server threads look at their stop flag.
pub const SERVER_POLL: Duration = Duration::from_millis(100);

/// State shared between a [`Server`] guard, the [`Lab`] and the threads.
pub(super) struct Shared {
    stop: AtomicBool,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn join(&self) {
        // Listeners first: once they are gone nobody adds connections.
        for list in [&self.listeners, &self.conns] {
            let handles = std::mem::take(&mut *lock(list));
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

/// Stops all `servers` (flags first, then joins, so they wind down together).
pub(super) fn shutdown_all(servers: &[Arc<Shared>]) {
    for s in servers {
        s.stop.store(true, Ordering::Relaxed);
    }
    for s in servers {
        s.join();
    }
}

/// Guard of the echo servers started by one [`Lab::serve`] call: they stop
/// when it drops (or when the lab drops, whichever comes first).
#[must_use = "the servers stop when this guard drops; call .keep() to tie them to the Lab"]
pub struct Server {
    shared: Arc<Shared>,
    stop_on_drop: bool,
}

impl Server {
    /// Lets the servers run until the [`Lab`] drops.
    pub fn keep(mut self) {
        self.stop_on_drop = false;
    }

    /// Stops the servers now and waits for their threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stop_on_drop {
            shutdown_all(std::slice::from_ref(&self.shared));
        }
    }
}

enum Sock {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Lab {
    /// Starts echo servers in `host`'s namespace on every `(proto, port)`,
    /// for every address of the namespace (both families). Each reply is the
    /// host's name and a newline; TCP connections are served until EOF.
    pub fn serve(&self, host: &Host, ports: &[(Proto, u16)]) -> Result<Server, LabError> {
        let server = serve_in(&host.netns, &host.name, self.addresses(host), ports)?;
        lock(&self.servers).push(Arc::clone(&server.shared));
        Ok(server)
    }
}

/// Starts echo servers in the namespace `netns` (any namespace, not only a
/// lab's) on every `(proto, port)` of every address in `addrs`; each reply
/// is `name` and a newline. They stop when the returned guard drops.
pub fn serve_in(
    netns: &str,
    name: &str,
    addrs: &[IpAddr],
    ports: &[(Proto, u16)],
) -> Result<Server, LabError> {
    let specs: Vec<(Proto, SocketAddr)> = addrs
        .iter()
        .flat_map(|a| {
            ports
                .iter()
                .map(move |(proto, p)| (*proto, SocketAddr::new(*a, *p)))
        })
        .collect();
    if specs.is_empty() {
        return Err(LabError::Setup(format!(
            "serve: host {name} has no address or no port given"
        )));
    }
    let ns = netns.to_owned();
    let socks = netns::in_netns(netns, move || {
        specs
            .iter()
            .map(|(proto, addr)| open(&ns, *proto, *addr))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        listeners: Mutex::new(Vec::new()),
        conns: Mutex::new(Vec::new()),
    });
    // From here on the guard owns the threads: an error below stops them.
    let guard = Server {
        shared: Arc::clone(&shared),
        stop_on_drop: true,
    };
    let reply: Arc<[u8]> = format!("{name}\n").into_bytes().into();
    for sock in socks {
        let (mine, reply) = (Arc::clone(&shared), Arc::clone(&reply));
        let handle = std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || match sock {
                Sock::Tcp(l) => tcp_loop(&l, &mine, &reply),
                Sock::Udp(u) => udp_loop(&u, &mine, &reply),
            })
            .map_err(|source| LabError::Io {
                context: format!("spawn echo thread for {name}"),
                source,
            })?;
        lock(&shared.listeners).push(handle);
    }
    Ok(guard)
}

/// Locks `m`, also when a thread panicked holding it (the lab still has to
/// clean up).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open(ns: &str, proto: Proto, addr: SocketAddr) -> Result<Sock, LabError> {
    let fail = |source| LabError::Io {
        context: format!("netns {ns}: bind {proto} {addr}"),
        source,
    };
    match proto {
        Proto::Tcp => {
            let l = TcpListener::bind(addr).map_err(fail)?;
            // Linux accept() honours SO_RCVTIMEO; std only exposes it on
            // streams, so set it through a TcpStream view of the same fd.
            let view = TcpStream::from(OwnedFd::from(l));
            view.set_read_timeout(Some(SERVER_POLL)).map_err(fail)?;
            Ok(Sock::Tcp(TcpListener::from(OwnedFd::from(view))))
        }
        Proto::Udp => {
            let u = UdpSocket::bind(addr).map_err(fail)?;
            u.set_read_timeout(Some(SERVER_POLL)).map_err(fail)?;
            Ok(Sock::Udp(u))
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn tcp_loop(listener: &TcpListener, shared: &Arc<Shared>, reply: &Arc<[u8]>) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((conn, _)) => {
                let (s, r) = (Arc::clone(shared), Arc::clone(reply));
                if let Ok(h) = std::thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || serve_conn(conn, &s, &r))
                {
                    let mut conns = lock(&shared.conns);
                    conns.retain(|h| !h.is_finished());
                    conns.push(h);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_conn(mut conn: TcpStream, shared: &Shared, reply: &[u8]) {
    if conn.set_read_timeout(Some(SERVER_POLL)).is_err() {
        return;
    }
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 1024];
    while !shared.stopped() {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if conn.write_all(reply).is_err() {
                    break;
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

fn udp_loop(sock: &UdpSocket, shared: &Shared, reply: &[u8]) {
    let mut buf = [0u8; 1500];
    while !shared.stopped() {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                let _ = sock.send_to(reply, peer);
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
