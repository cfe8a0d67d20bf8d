//! The only FFI of the dataplane: owned libnftnl objects (table, chain, set,
//! set element, rule, expression), netlink message building into one
//! contiguous batch buffer, and parsing of messages the kernel sends back.
//!
//! Everything here is mechanical: which attributes to set and in which
//! order is decided by `encode.rs`. Each object frees itself on drop;
//! expressions and elements are handed over to their rule or set.
#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;

pub(super) use super::msgbuf::MsgBuf;

/// `nfgen_family` of our table's messages.
pub(super) const NFPROTO_INET: u16 = libc::NFPROTO_INET as u16;

fn oom(rc: i32) {
    // libnftnl only fails a setter when malloc fails; like libstd, give up.
    if rc < 0 {
        std::process::abort();
    }
}

fn cstring(s: &str) -> CString {
    // Names and comments are validated by `encode` before they get here.
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "_")).unwrap_or_default())
}

/// Copies `msg` into a 4-byte aligned buffer and hands libnftnl a header
/// pointer to it.
fn with_aligned<T>(msg: &[u8], f: impl FnOnce(*const libc::nlmsghdr) -> T) -> T {
    let mut words = vec![0u32; msg.len().div_ceil(4)];
    // SAFETY: `words` has at least `msg.len()` bytes; u32 has no invalid bit patterns.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), words.as_mut_ptr().cast::<u8>(), msg.len());
    }
    f(words.as_ptr().cast::<libc::nlmsghdr>())
}

macro_rules! nftnl_object {
    ($(#[$m:meta])* $name:ident, $raw:ident, $alloc:ident, $free:ident, $set:ident, $get:ident,
     $is_set:ident, $build:ident, $parse:ident) => {
        $(#[$m])*
        pub(super) struct $name(NonNull<sys::$raw>);

        impl $name {
            /// An empty object.
            pub(super) fn new() -> Self {
                // SAFETY: plain allocation; NULL (out of memory) is handled.
                let raw = unsafe { sys::$alloc() };
                Self(NonNull::new(raw).unwrap_or_else(|| std::process::abort()))
            }

            /// Sets attribute `attr` to `data` (copied).
            pub(super) fn set(&mut self, attr: u32, data: &[u8]) {
                // SAFETY: the object is live; libnftnl copies `data.len()` bytes.
                oom(unsafe {
                    sys::$set(self.0.as_ptr(), attr as u16, data.as_ptr().cast::<c_void>(), data.len() as u32)
                });
            }

            /// Sets a string attribute.
            pub(super) fn set_str(&mut self, attr: u32, s: &str) {
                self.set(attr, cstring(s).as_bytes_with_nul());
            }

            /// Sets a u32 attribute (host order, as libnftnl expects).
            pub(super) fn set_u32(&mut self, attr: u32, v: u32) {
                self.set(attr, &v.to_ne_bytes());
            }

            /// The bytes of attribute `attr`, if set.
            pub(super) fn get(&self, attr: u32) -> Option<Vec<u8>> {
                // SAFETY: the object is live.
                if !unsafe { sys::$is_set(self.0.as_ptr(), attr as u16) } {
                    return None;
                }
                let mut len = 0u32;
                // SAFETY: libnftnl returns a pointer to `len` bytes owned by the object.
                let p = unsafe { sys::$get(self.0.as_ptr(), attr as u16, &mut len) };
                copy_out(p, len)
            }

            /// A u32 attribute.
            #[allow(dead_code)]
            pub(super) fn get_u32(&self, attr: u32) -> Option<u32> {
                self.get(attr).and_then(|b| Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?)))
            }

            /// A string attribute.
            #[allow(dead_code)]
            pub(super) fn get_str(&self, attr: u32) -> Option<String> {
                self.get(attr).map(|b| c_bytes_to_string(&b))
            }

            /// Appends this object's message to `buf`.
            pub(super) fn write(&self, buf: &mut MsgBuf, ty: u16, flags: u16, seq: u32) {
                buf.append(ty, flags, seq, |nlh| {
                    // SAFETY: `nlh` points into a buffer with room for the largest message.
                    unsafe { sys::$build(nlh, self.0.as_ptr()) }
                });
            }

            /// Parses one message of the kernel's.
            pub(super) fn parse(msg: &[u8]) -> Option<Self> {
                let obj = Self::new();
                // SAFETY: `nlh` points to a whole aligned message of `msg.len()` bytes.
                let rc = with_aligned(msg, |nlh| unsafe { sys::$parse(nlh, obj.0.as_ptr()) });
                (rc >= 0).then_some(obj)
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: we own the object and free it once.
                unsafe { sys::$free(self.0.as_ptr()) }
            }
        }
    };
}

fn copy_out(p: *const c_void, len: u32) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: libnftnl returned `len` readable bytes at `p`.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec())
}

/// The text up to the first NUL (all of it when there is none).
pub(super) fn c_bytes_to_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

nftnl_object!(
    /// `struct nftnl_table`.
    Table, nftnl_table, nftnl_table_alloc, nftnl_table_free, nftnl_table_set_data,
    nftnl_table_get_data, nftnl_table_is_set, nftnl_table_nlmsg_build_payload,
    nftnl_table_nlmsg_parse
);
nftnl_object!(
    /// `struct nftnl_chain`.
    Chain, nftnl_chain, nftnl_chain_alloc, nftnl_chain_free, nftnl_chain_set_data,
    nftnl_chain_get_data, nftnl_chain_is_set, nftnl_chain_nlmsg_build_payload,
    nftnl_chain_nlmsg_parse
);
nftnl_object!(
    /// `struct nftnl_set`: a set's definition, or (with elements added) a
    /// list of elements for one element message.
    Set, nftnl_set, nftnl_set_alloc, nftnl_set_free, nftnl_set_set_data, nftnl_set_get_data,
    nftnl_set_is_set, nftnl_set_nlmsg_build_payload, nftnl_set_nlmsg_parse
);
nftnl_object!(
    /// `struct nftnl_rule`.
    Rule, nftnl_rule, nftnl_rule_alloc, nftnl_rule_free, nftnl_rule_set_data,
    nftnl_rule_get_data, nftnl_rule_is_set, nftnl_rule_nlmsg_build_payload,
    nftnl_rule_nlmsg_parse
);

impl Set {
    /// Hands `elem` over to this set's element list.
    pub(super) fn add_elem(&mut self, elem: Elem) {
        let raw = elem.0.as_ptr();
        std::mem::forget(elem);
        // SAFETY: the set takes ownership of the element and frees it.
        unsafe { sys::nftnl_set_elem_add(self.0.as_ptr(), raw) }
    }

    /// Appends an element message (NEWSETELEM/DELSETELEM) with every element
    /// of this set's list. The caller keeps it under 64 KiB.
    pub(super) fn write_elems(&self, buf: &mut MsgBuf, ty: u16, flags: u16, seq: u32) {
        buf.append(ty, flags, seq, |nlh| {
            // SAFETY: `nlh` points into a buffer with room for the largest message.
            unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, self.0.as_ptr()) }
        });
    }

    /// Adds the elements of a NEWSETELEM message of the kernel's to this set.
    pub(super) fn parse_elems(&mut self, msg: &[u8]) -> bool {
        // SAFETY: `nlh` points to a whole aligned message.
        with_aligned(msg, |nlh| unsafe {
            sys::nftnl_set_elems_nlmsg_parse(nlh, self.0.as_ptr())
        }) >= 0
    }

    /// Calls `f` on each element of the list.
    pub(super) fn for_each_elem(&self, mut f: impl FnMut(&ElemRef<'_>)) {
        // SAFETY: the iterator borrows the live set and is destroyed below.
        let iter = unsafe { sys::nftnl_set_elems_iter_create(self.0.as_ptr()) };
        if iter.is_null() {
            std::process::abort();
        }
        loop {
            // SAFETY: `iter` is live; elements stay owned by the set.
            let e = unsafe { sys::nftnl_set_elems_iter_next(iter) };
            let Some(e) = NonNull::new(e) else { break };
            f(&ElemRef(e, PhantomData));
        }
        // SAFETY: created above, destroyed once.
        unsafe { sys::nftnl_set_elems_iter_destroy(iter) }
    }
}

/// `struct nftnl_set_elem`, owned until added to a `Set`.
pub(super) struct Elem(NonNull<sys::nftnl_set_elem>);

impl Elem {
    /// An empty element.
    pub(super) fn new() -> Self {
        // SAFETY: plain allocation; NULL is handled.
        Self(
            NonNull::new(unsafe { sys::nftnl_set_elem_alloc() })
                .unwrap_or_else(|| std::process::abort()),
        )
    }

    /// Sets attribute `attr` to `data` (copied).
    pub(super) fn set(&mut self, attr: u32, data: &[u8]) {
        // SAFETY: the element is live; libnftnl copies the bytes.
        oom(unsafe {
            sys::nftnl_set_elem_set(
                self.0.as_ptr(),
                attr as u16,
                data.as_ptr().cast(),
                data.len() as u32,
            )
        });
    }
}

impl Drop for Elem {
    fn drop(&mut self) {
        // SAFETY: we still own the element (not handed to a set).
        unsafe { sys::nftnl_set_elem_free(self.0.as_ptr()) }
    }
}

/// A borrowed element of a set's list.
pub(super) struct ElemRef<'a>(NonNull<sys::nftnl_set_elem>, PhantomData<&'a Set>);

impl ElemRef<'_> {
    /// The bytes of attribute `attr`, if set.
    pub(super) fn get(&self, attr: u32) -> Option<Vec<u8>> {
        // SAFETY: the element is live while the set is borrowed.
        if !unsafe { sys::nftnl_set_elem_is_set(self.0.as_ptr(), attr as u16) } {
            return None;
        }
        let mut len = 0u32;
        // SAFETY: as above; the returned bytes belong to the element.
        copy_out(
            unsafe { sys::nftnl_set_elem_get(self.0.as_ptr(), attr as u16, &mut len) },
            len,
        )
    }
}

/// One expression, owned until added to a `Rule`.
pub(super) struct Expr(NonNull<sys::nftnl_expr>);

impl Expr {
    /// A new expression of kind `name` (`payload`, `cmp`, ...).
    pub(super) fn new(name: &str) -> Self {
        let name = cstring(name);
        // SAFETY: `name` is NUL-terminated; NULL (unknown name or OOM) aborts.
        let raw = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        Self(NonNull::new(raw).unwrap_or_else(|| std::process::abort()))
    }

    /// Sets attribute `attr` to `data` (copied).
    pub(super) fn set(mut self, attr: u32, data: &[u8]) -> Self {
        // SAFETY: the expression is live; libnftnl copies the bytes.
        oom(unsafe {
            sys::nftnl_expr_set(
                self.0.as_mut(),
                attr as u16,
                data.as_ptr().cast(),
                data.len() as u32,
            )
        });
        self
    }

    /// Sets a u32 attribute (host order).
    pub(super) fn u32(self, attr: u32, v: u32) -> Self {
        self.set(attr, &v.to_ne_bytes())
    }

    /// Sets a string attribute.
    pub(super) fn str(self, attr: u32, s: &str) -> Self {
        self.set(attr, cstring(s).as_bytes_with_nul())
    }
}

impl Drop for Expr {
    fn drop(&mut self) {
        // SAFETY: we still own the expression (not handed to a rule).
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
    }
}

/// A borrowed expression of a rule.
pub(super) struct ExprRef<'a>(NonNull<sys::nftnl_expr>, PhantomData<&'a Rule>);

impl ExprRef<'_> {
    /// The bytes of attribute `attr`, if set.
    pub(super) fn get(&self, attr: u32) -> Option<Vec<u8>> {
        // SAFETY: the expression is live while the rule is borrowed.
        if !unsafe { sys::nftnl_expr_is_set(self.0.as_ptr(), attr as u16) } {
            return None;
        }
        let mut len = 0u32;
        // SAFETY: as above.
        copy_out(
            unsafe { sys::nftnl_expr_get(self.0.as_ptr(), attr as u16, &mut len) },
            len,
        )
    }

    /// The expression's kind (`payload`, ...).
    pub(super) fn name(&self) -> String {
        self.get(sys::NFTNL_EXPR_NAME)
            .map(|b| c_bytes_to_string(&b))
            .unwrap_or_default()
    }
}

impl Rule {
    /// Hands `expr` over to the end of this rule.
    pub(super) fn add_expr(&mut self, expr: Expr) {
        let raw = expr.0.as_ptr();
        std::mem::forget(expr);
        // SAFETY: the rule takes ownership of the expression and frees it.
        unsafe { sys::nftnl_rule_add_expr(self.0.as_ptr(), raw) }
    }

    /// Calls `f` on each expression in order.
    pub(super) fn for_each_expr(&self, mut f: impl FnMut(&ExprRef<'_>)) {
        // SAFETY: the iterator borrows the live rule and is destroyed below.
        let iter = unsafe { sys::nftnl_expr_iter_create(self.0.as_ptr()) };
        if iter.is_null() {
            std::process::abort();
        }
        loop {
            // SAFETY: `iter` is live; expressions stay owned by the rule.
            let e = unsafe { sys::nftnl_expr_iter_next(iter) };
            let Some(e) = NonNull::new(e) else { break };
            f(&ExprRef(e, PhantomData));
        }
        // SAFETY: created above, destroyed once.
        unsafe { sys::nftnl_expr_iter_destroy(iter) }
    }
}

/// The ruleset generation id of a NEWGEN message.
pub(super) fn parse_genid(msg: &[u8]) -> Option<u32> {
    // SAFETY: plain allocation, freed below.
    let gen = unsafe { sys::nftnl_gen_alloc() };
    if gen.is_null() {
        std::process::abort();
    }
    // SAFETY: `nlh` points to a whole aligned message; `gen` is live.
    let rc = with_aligned(msg, |nlh| unsafe { sys::nftnl_gen_nlmsg_parse(nlh, gen) });
    // SAFETY: `gen` is live.
    let id = (rc >= 0 && unsafe { sys::nftnl_gen_is_set(gen, sys::NFTNL_GEN_ID as u16) })
        // SAFETY: the attribute is set.
        .then(|| unsafe { sys::nftnl_gen_get_u32(gen, sys::NFTNL_GEN_ID as u16) });
    // SAFETY: allocated above, freed once.
    unsafe { sys::nftnl_gen_free(gen) };
    id
}
