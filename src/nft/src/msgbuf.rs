//! One batch as bytes: netlink messages written by libnftnl back to back
//! into a single 4-byte aligned buffer, ready for ONE `send`.
#![allow(unsafe_code)]

use std::ffi::c_char;

use nftnl::nftnl_sys as sys;

use super::ffi::NFPROTO_INET;

/// Netlink messages laid out back to back in one 4-byte aligned buffer: a
/// whole batch, sent with one `send`.
#[derive(Default)]
pub(super) struct MsgBuf {
    words: Vec<u32>,
}

impl MsgBuf {
    /// The messages' bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds `4 * len` initialised bytes; u8 has alignment 1.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.words.len() * 4)
        }
    }

    /// Number of bytes so far.
    pub(super) fn len(&self) -> usize {
        self.words.len() * 4
    }

    /// ORs `flags` into `nlmsg_flags` of the message starting at byte `start`.
    pub(super) fn or_flags(&mut self, start: usize, flags: u16) {
        // Header bytes 4..6 are nlmsg_type, 6..8 nlmsg_flags: one aligned word.
        if let Some(word) = self.words.get_mut(start / 4 + 1) {
            let mut b = word.to_ne_bytes();
            let old = u16::from_ne_bytes([b[2], b[3]]);
            b[2..4].copy_from_slice(&(old | flags).to_ne_bytes());
            *word = u32::from_ne_bytes(b);
        }
    }

    /// `NFNL_MSG_BATCH_BEGIN` for nf_tables.
    pub(super) fn batch_begin(&mut self, seq: u32) {
        self.append_raw(|p| {
            // SAFETY: `p` has room for a header.
            unsafe { sys::nftnl_batch_begin(p, seq) }
        });
    }

    /// `NFNL_MSG_BATCH_END`.
    pub(super) fn batch_end(&mut self, seq: u32) {
        self.append_raw(|p| {
            // SAFETY: `p` has room for a header.
            unsafe { sys::nftnl_batch_end(p, seq) }
        });
    }

    /// A request without payload (`NFT_MSG_GETGEN`).
    pub(super) fn request(&mut self, ty: u16, family: u16, flags: u16, seq: u32) {
        self.append_raw(|p| {
            // SAFETY: `p` has room for a header.
            unsafe { sys::nftnl_nlmsg_build_hdr(p, ty, family, flags, seq) }
        });
    }

    /// Appends an nf_tables message (inet family): header, then `payload`.
    pub(super) fn append(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        payload: impl FnOnce(*mut libc::nlmsghdr),
    ) {
        self.append_raw(|p| {
            // SAFETY: `p` has room for the largest nf_tables message.
            let nlh = unsafe { sys::nftnl_nlmsg_build_hdr(p, ty, NFPROTO_INET, flags, seq) };
            payload(nlh);
            nlh
        });
    }

    /// Lets `build` write one message at the end and keeps it.
    fn append_raw(&mut self, build: impl FnOnce(*mut c_char) -> *mut libc::nlmsghdr) {
        let max_words = (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(4);
        self.words.reserve(max_words);
        let used = self.words.len();
        // SAFETY: `reserve` guarantees `max_words` spare words after `used`.
        let p = unsafe { self.words.as_mut_ptr().add(used) };
        // libnftnl writes every byte it counts in nlmsg_len (padding included).
        let nlh = build(p.cast::<c_char>());
        // SAFETY: `build` returned the header it wrote at `p`.
        let len = unsafe { (*nlh).nlmsg_len } as usize;
        let words = len.div_ceil(4).min(max_words);
        // SAFETY: the first `words` spare words were written by libnftnl
        // (netlink lengths are 4-byte aligned, padding is zeroed by libmnl).
        unsafe { self.words.set_len(used + words) };
    }
}
