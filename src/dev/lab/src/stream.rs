//! Long-lived TCP streams, for tests that change rules while a connection is
//! open and then check that it still carries data.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::probe::read_line;
use super::{netns, Host, Lab, LabError, Proto};

/// Default time [`Stream::exchange`] waits for the echo.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(1);

/// An open TCP connection from one lab namespace to an echo server.
///
/// The socket was created inside the source namespace and stays there; the
/// handle can be used from any thread.
#[derive(Debug)]
pub struct Stream {
    conn: TcpStream,
    from: String,
    peer: SocketAddr,
    timeout: Duration,
}

impl Stream {
    /// Sends one byte and waits for the echo; returns the server's name.
    pub fn exchange(&mut self) -> Result<String, LabError> {
        let fail = |reason: String| LabError::Probe {
            from: self.from.clone(),
            to: self.peer,
            proto: Proto::Tcp,
            reason: format!("on the open stream: {reason}"),
        };
        self.conn.write_all(b"?").map_err(|e| fail(e.to_string()))?;
        read_line(&mut self.conn, Instant::now() + self.timeout).map_err(|e| fail(e.to_string()))
    }

    /// Sets how long [`Stream::exchange`] waits (default [`EXCHANGE_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }
}

impl Lab {
    /// Opens a TCP connection from `from`'s namespace to `to:port` (an echo
    /// server), checks that it carries one exchange, and returns it.
    pub fn stream(
        &self,
        from: &Host,
        to: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<Stream, LabError> {
        let peer = SocketAddr::new(to, port);
        let from_name = from.name.clone();
        let conn = netns::in_netns(&from.netns, move || {
            let c = TcpStream::connect_timeout(&peer, timeout)
                .and_then(|c| c.set_nodelay(true).map(|()| c));
            c.map_err(|e| LabError::Probe {
                from: from_name,
                to: peer,
                proto: Proto::Tcp,
                reason: e.to_string(),
            })
        })?;
        let mut stream = Stream {
            conn,
            from: from.name.clone(),
            peer,
            timeout,
        };
        stream.exchange()?;
        stream.timeout = EXCHANGE_TIMEOUT;
        Ok(stream)
    }
}

/// A long-lived UDP flow: one socket in a lab namespace, connected to a
/// UDP echo server, that sends a datagram and waits for the answer on each
/// try (conntrack keeps one entry for it while it is used).
#[derive(Debug)]
pub struct UdpFlow(std::net::UdpSocket);

impl UdpFlow {
    /// Opens the socket inside `from`'s namespace, connected to `to`; each
    /// try waits `timeout` for the answer.
    pub fn open(from: &Host, to: SocketAddr, timeout: Duration) -> Result<Self, LabError> {
        let s = netns::in_netns(from.netns(), move || {
            let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .expect("a literal address");
            let s = std::net::UdpSocket::bind(any).and_then(|s| s.connect(to).map(|()| s));
            s.map_err(|e| LabError::Setup(e.to_string()))
        })?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| LabError::Setup(e.to_string()))?;
        Ok(Self(s))
    }

    /// One try: a datagram and its answer within the timeout.
    pub fn once(&self) -> bool {
        let mut buf = [0u8; 64];
        self.0.send(b"?").is_ok() && self.0.recv(&mut buf).is_ok()
    }

    /// An answered exchange in up to three tries.
    pub fn exchange(&self) -> bool {
        (0..3).any(|_| self.once())
    }
}
