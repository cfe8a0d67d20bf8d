//! One conversation with nf_tables: send a batch and collect the kernel's
//! verdict on it (naming the message it rejected), or send a request and
//! collect its answer (a single object, a dump, the generation id).

use std::io;

use super::batch::Batch;
use super::ffi::{self, MsgBuf};
use super::nlmsg::{self, NlError};
use super::socket::Socket;
use super::ApplyError;

/// A socket and its sequence numbers.
pub(super) struct Conn {
    sock: Socket,
    /// Next sequence number.
    pub seq: u32,
    buf: Vec<u8>,
}

impl Conn {
    /// Opens the socket (in `netns`, if given).
    pub(super) fn open(netns: Option<&str>) -> Result<Self, ApplyError> {
        let sock = Socket::open(netns).map_err(|source| ApplyError::Socket {
            netns: netns.map(str::to_owned),
            source,
        })?;
        // Like nft: start from the clock, so that stale replies of another
        // run never match.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Self {
            sock,
            seq,
            buf: vec![0; 1 << 20],
        })
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(1);
        s
    }

    /// Sends the batch in one datagram and waits for the answer to its last
    /// message. Every error the kernel reports is collected; the first
    /// becomes the returned error, naming the object it carried.
    pub(super) fn send_batch(&mut self, batch: &Batch<'_>) -> Result<(), ApplyError> {
        if batch.messages() == 0 {
            return Ok(()); // nothing would answer
        }
        self.sock
            .send(batch.buf.bytes())
            .map_err(|source| ApplyError::Io {
                context: "sending the batch",
                source,
            })?;
        let span = batch.last.wrapping_sub(batch.begin);
        let mut errors: Vec<NlError> = Vec::new();
        let mut done = false;
        while !done {
            let n = self
                .sock
                .recv(&mut self.buf)
                .map_err(|source| ApplyError::Io {
                    context: "reading the answer to the batch",
                    source,
                })?;
            for m in nlmsg::messages(&self.buf[..n]) {
                let Some(err) = nlmsg::error(&m) else {
                    continue;
                };
                if err.seq.wrapping_sub(batch.begin) > span {
                    continue; // not ours (a stale answer)
                }
                done |= err.seq == batch.last || (err.seq == batch.begin && err.code != 0);
                if err.code != 0 {
                    errors.push(err);
                }
            }
        }
        let Some(first) = errors.first() else {
            return Ok(());
        };
        Err(ApplyError::Rejected {
            object: batch.describe(first.seq, first.offset),
            errno: -first.code,
            detail: first.text.clone(),
            others: errors.len() - 1,
        })
    }

    /// Sends one request built by `build` (given its sequence number) and
    /// returns the object messages of the answer, up to `NLMSG_DONE` for a
    /// dump or the ACK otherwise. A dump the kernel marks as interrupted (the
    /// ruleset changed meanwhile) is asked again, like nft does.
    pub(super) fn request(
        &mut self,
        dump: bool,
        build: impl Fn(&mut MsgBuf, u32),
    ) -> io::Result<Vec<Vec<u8>>> {
        const NLM_F_DUMP_INTR: u16 = 0x10;
        for _ in 0..5 {
            let seq = self.next_seq();
            let mut req = MsgBuf::default();
            build(&mut req, seq);
            self.sock.send(req.bytes())?;
            let (out, interrupted) = self.answer(seq, dump, NLM_F_DUMP_INTR)?;
            if !interrupted {
                return Ok(out);
            }
        }
        Err(io::Error::from_raw_os_error(libc::EINTR))
    }

    /// Reads the answer to request `seq`; also says whether a message
    /// carried `intr_flag`.
    fn answer(&mut self, seq: u32, dump: bool, intr_flag: u16) -> io::Result<(Vec<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for m in nlmsg::messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                interrupted |= m.flags & intr_flag != 0;
                if m.ty == nlmsg::NLMSG_DONE {
                    return Ok((out, interrupted));
                }
                match nlmsg::error(&m) {
                    Some(e) if e.code != 0 => return Err(io::Error::from_raw_os_error(-e.code)),
                    Some(_) if !dump => return Ok((out, interrupted)),
                    Some(_) => {}
                    None => out.push(m.bytes.to_vec()),
                }
            }
        }
    }

    /// The ruleset generation id (`NFT_MSG_GETGEN`): it changes with every
    /// committed batch, ours or anyone's.
    pub(super) fn genid(&mut self) -> io::Result<u32> {
        let ack = libc::NLM_F_ACK as u16;
        let msgs = self.request(false, |buf, seq| {
            buf.request(libc::NFT_MSG_GETGEN as u16, 0, ack, seq)
        })?;
        msgs.iter()
            .find_map(|m| ffi::parse_genid(m))
            .ok_or_else(|| io::Error::other("no generation id in the answer"))
    }
}
