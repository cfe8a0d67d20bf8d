//! Connectivity matrices: what [`Lab::probe_matrix`](super::Lab::probe_matrix)
//! returns, built so that tests can compare against an expected matrix and
//! print both readably (`.` = connected, `X` = blocked, as in the
//! Kubernetes network-policy e2e truth tables).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Family, Proto};

/// One cell of a matrix: from host, to host, port, protocol, family.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeKey {
    /// Source host name.
    pub from: String,
    /// Destination host name.
    pub to: String,
    /// Destination port.
    pub port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// IP family.
    pub family: Family,
}

/// Probe results, keyed by cell; `true` = connected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    /// The cells.
    pub results: BTreeMap<ProbeKey, bool>,
}

/// A cell where the probe disagreed with the expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The cell.
    pub key: ProbeKey,
    /// What the probe saw (`None`: the cell is missing from this matrix).
    pub got: Option<bool>,
    /// What was expected (`None`: the cell is missing from the expectation).
    pub want: Option<bool>,
}

impl Matrix {
    /// A matrix with the same cells whose values are `f(cell)`: the usual way
    /// to write an expectation.
    pub fn expect(&self, f: impl Fn(&ProbeKey) -> bool) -> Matrix {
        Matrix {
            results: self.results.keys().map(|k| (k.clone(), f(k))).collect(),
        }
    }

    /// The result of one cell.
    pub fn get(
        &self,
        from: &str,
        to: &str,
        port: u16,
        proto: Proto,
        family: Family,
    ) -> Option<bool> {
        let key = ProbeKey {
            from: from.to_owned(),
            to: to.to_owned(),
            port,
            proto,
            family,
        };
        self.results.get(&key).copied()
    }

    /// Number of cells that connected and that were blocked.
    pub fn counts(&self) -> (usize, usize) {
        let ok = self.results.values().filter(|v| **v).count();
        (ok, self.results.len() - ok)
    }

    /// Cells where `self` and `expected` differ (including missing cells).
    pub fn diff(&self, expected: &Matrix) -> Vec<Mismatch> {
        let keys: BTreeSet<&ProbeKey> =
            self.results.keys().chain(expected.results.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let got = self.results.get(k).copied();
                let want = expected.results.get(k).copied();
                (got != want).then(|| Mismatch {
                    key: k.clone(),
                    got,
                    want,
                })
            })
            .collect()
    }

    /// `Ok` if `self` equals `expected`; otherwise a report with both
    /// matrices and every differing cell, fit for `panic!`.
    pub fn check(&self, expected: &Matrix) -> Result<(), String> {
        let diff = self.diff(expected);
        if diff.is_empty() {
            return Ok(());
        }
        let mut out = format!(
            "{} cells differ\n--- got ---\n{self}--- expected ---\n{expected}",
            diff.len()
        );
        let show = |v: Option<bool>| match v {
            Some(true) => "connected",
            Some(false) => "blocked",
            None => "missing",
        };
        for m in &diff {
            let k = &m.key;
            out.push_str(&format!(
                "{} -> {} {}/{} {}: got {}, want {}\n",
                k.from,
                k.to,
                k.proto,
                k.port,
                k.family,
                show(m.got),
                show(m.want)
            ));
        }
        Err(out)
    }
}

impl fmt::Display for Matrix {
    /// One grid per (protocol, port, family): rows are sources, columns
    /// destinations, `.` connected, `X` blocked, blank not probed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: BTreeSet<(Proto, u16, Family)> = self
            .results
            .keys()
            .map(|k| (k.proto, k.port, k.family))
            .collect();
        for (proto, port, family) in groups {
            let in_group = |k: &&ProbeKey| (k.proto, k.port, k.family) == (proto, port, family);
            let rows: BTreeSet<&str> = self
                .results
                .keys()
                .filter(in_group)
                .map(|k| k.from.as_str())
                .collect();
            let cols: BTreeSet<&str> = self
                .results
                .keys()
                .filter(in_group)
                .map(|k| k.to.as_str())
                .collect();
            let row_w = rows.iter().map(|r| r.len()).max().unwrap_or(0);
            let col_w = cols.iter().map(|c| c.len()).max().unwrap_or(1);
            writeln!(f, "{proto}/{port} {family}")?;
            write!(f, "{:row_w$}", "")?;
            for c in &cols {
                write!(f, " {c:>col_w$}")?;
            }
            writeln!(f)?;
            for r in &rows {
                write!(f, "{r:row_w$}")?;
                for c in &cols {
                    let mark = match self.get(r, c, port, proto, family) {
                        Some(true) => ".",
                        Some(false) => "X",
                        None => " ",
                    };
                    write!(f, " {mark:>col_w$}")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
