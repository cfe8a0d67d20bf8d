//! Reading netlink messages and attributes out of byte buffers, in safe
//! Rust: message headers, `NLMSG_ERROR` (with extended-ACK attributes) and
//! attribute walks. Knows nothing about nftables objects.

/// `NLMSG_ERROR`.
pub(super) const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub(super) const NLMSG_DONE: u16 = 3;
/// Size of `struct nlmsghdr`.
pub(super) const HDR_LEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub(super) const NFGEN_LEN: usize = 4;
/// `NLM_F_ACK_TLVS`: extended-ACK attributes follow an error.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLMSGERR_ATTR_OFFS`.
const NLMSGERR_ATTR_OFFS: u16 = 2;

/// One message of a buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Msg<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of `buf`, stopping at the first malformed one.
pub(super) fn messages(buf: &[u8]) -> Vec<Msg<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(ty), Some(flags), Some(seq)) = (
        u32_at(buf, at),
        u16_at(buf, at + 4),
        u16_at(buf, at + 6),
        u32_at(buf, at + 8),
    ) {
        let len = len as usize;
        if len < HDR_LEN || at + len > buf.len() {
            break;
        }
        out.push(Msg {
            ty,
            flags,
            seq,
            bytes: &buf[at..at + len],
        });
        at += align4(len);
    }
    out
}

/// An `NLMSG_ERROR` message: an error or (code 0) an ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NlError {
    /// `-errno`, 0 for an ACK.
    pub code: i32,
    /// Sequence number of the message it answers.
    pub seq: u32,
    /// Extended ACK: byte offset of the offending attribute in that message.
    pub offset: Option<u32>,
    /// Extended ACK: the kernel's text.
    pub text: Option<String>,
}

/// Decodes an `NLMSG_ERROR` message (`None` for other types).
pub(super) fn error(msg: &Msg<'_>) -> Option<NlError> {
    if msg.ty != NLMSG_ERROR {
        return None;
    }
    let b = msg.bytes;
    let code = u32_at(b, HDR_LEN)? as i32;
    let orig_len = u32_at(b, HDR_LEN + 4)? as usize;
    let seq = u32_at(b, HDR_LEN + 4 + 8)?;
    let mut err = NlError {
        code,
        seq,
        offset: None,
        text: None,
    };
    if msg.flags & NLM_F_ACK_TLVS != 0 {
        // NETLINK_CAP_ACK: only the original header is echoed for errors
        // with TLVs; without it the whole original message is.
        const CAPPED: u16 = 0x100;
        let echoed = if msg.flags & CAPPED != 0 || code == 0 {
            HDR_LEN
        } else {
            align4(orig_len)
        };
        for (ty, payload) in attrs(b.get(HDR_LEN + 4 + echoed..).unwrap_or(&[])) {
            match ty {
                NLMSGERR_ATTR_MSG => err.text = Some(super::ffi::c_bytes_to_string(payload)),
                NLMSGERR_ATTR_OFFS => err.offset = u32_at(payload, 0),
                _ => {}
            }
        }
    }
    Some(err)
}

/// The attributes in `buf` as (type without flag bits, payload).
pub(super) fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    attrs_at(buf, 0)
        .into_iter()
        .map(|(_, ty, p)| (ty, p))
        .collect()
}

/// Like `attrs`, with each attribute's offset in `buf` (plus `base`).
pub(super) fn attrs_at(buf: &[u8], base: usize) -> Vec<(usize, u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(ty)) = (u16_at(buf, at), u16_at(buf, at + 2)) {
        let len = len as usize;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((base + at, ty & 0x3fff, &buf[at + 4..at + len]));
        at += align4(len);
    }
    out
}

/// The attributes of an nf_tables message (after header and nfgenmsg).
pub(super) fn nft_attrs<'a>(msg: &Msg<'a>) -> Vec<(u16, &'a [u8])> {
    attrs(msg.bytes.get(HDR_LEN + NFGEN_LEN..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    #[test]
    fn error_with_extack_offset() {
        // error -2 for seq 7, capped, with an OFFS attribute of 40.
        let mut m = hdr(0, NLMSG_ERROR, 0x100 | 0x200, 1);
        m.extend_from_slice(&(-2i32).to_ne_bytes());
        m.extend(hdr(200, 0x0a06, 0x1, 7));
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NLMSGERR_ATTR_OFFS.to_ne_bytes());
        m.extend_from_slice(&40u32.to_ne_bytes());
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        let mut buf = m.clone();
        buf.extend(hdr(16, NLMSG_DONE, 0, 2));
        let msgs = messages(&buf);
        assert_eq!(msgs.len(), 2);
        let e = error(&msgs[0]).unwrap();
        assert_eq!(
            e,
            NlError {
                code: -2,
                seq: 7,
                offset: Some(40),
                text: None
            }
        );
        assert!(error(&msgs[1]).is_none());
    }

    #[test]
    fn truncated_buffer_stops() {
        let mut buf = hdr(16, NLMSG_DONE, 0, 1);
        buf.extend(hdr(64, NLMSG_DONE, 0, 2));
        assert_eq!(messages(&buf).len(), 1);
    }
}
