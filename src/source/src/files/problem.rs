//! What can go wrong while loading manifest files: fatal I/O errors
//! ([`LoadError`]) and the per-object problems ([`Problem`], [`Issue`]) that
//! are reported while everything else still loads.
//!
//! Plain data only: no `k8s-openapi` types reach this file.

use std::fmt;
use std::path::PathBuf;

/// A failure that stops loading: a path that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file (or a path given on the command line) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory could not be listed.
    #[error("cannot list directory {}: {source}", path.display())]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

pub use crate::issue::{Format, Issue};

/// What was left out because of a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The one object (pod, policy, namespace) the problem names.
    Object,
    /// The whole document (or `List` item).
    Document,
    /// The rest of the file, from this document on (JSON syntax errors).
    RestOfFile,
    /// The whole file.
    File,
}

/// One thing wrong in the input, and where; the object (or document) it
/// names was skipped and everything else loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as its path was given or listed.
    pub file: PathBuf,
    /// 0-based index of the YAML document (or JSON value) in the file;
    /// `None` when the problem concerns the whole file.
    pub document: Option<usize>,
    /// 0-based index in the `items` of a `kind: List` document.
    pub item: Option<usize>,
    /// The object's `kind`, when known.
    pub kind: Option<String>,
    /// The object's namespace (defaulted), when namespaced.
    pub namespace: Option<String>,
    /// The object's `metadata.name`, when known.
    pub name: Option<String>,
    /// The field path inside the object, e.g. `spec.ingress[0].ports[1].port`.
    pub field: Option<String>,
    /// What is wrong; its `Display` is the message.
    pub issue: Issue,
    /// What was left out.
    pub skipped: Skipped,
}

impl Problem {
    /// The message, without the location.
    pub fn message(&self) -> String {
        self.issue.to_string()
    }

    /// `file: document N[, item M]`, the place of the document.
    pub fn location(&self) -> String {
        location(&self.file, self.document, self.item)
    }

    fn consequence(&self) -> &'static str {
        match (self.skipped, self.kind.as_deref()) {
            (Skipped::File, _) => "file skipped",
            (Skipped::RestOfFile, _) => "rest of the file skipped",
            (Skipped::Object, Some("Pod")) => "pod skipped",
            (Skipped::Object, Some("NetworkPolicy")) => "policy skipped",
            (Skipped::Object, Some("Namespace")) => "namespace skipped",
            _ if self.item.is_some() => "item skipped",
            _ => "document skipped",
        }
    }
}

/// `file: document N[, item M]`.
pub(super) fn location(
    file: &std::path::Path,
    document: Option<usize>,
    item: Option<usize>,
) -> String {
    let mut out = file.display().to_string();
    if let Some(d) = document {
        out.push_str(&format!(": document {d}"));
    }
    if let Some(i) = item {
        out.push_str(&format!(", item {i}"));
    }
    out
}

impl fmt::Display for Problem {
    /// One line: `file: document N: Kind ns/name: field: message; what was skipped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.location();
        if self.kind.is_some() || self.name.is_some() {
            let kind = self.kind.as_deref().unwrap_or("object");
            line.push_str(&format!(": {kind}"));
            match (&self.namespace, &self.name) {
                (Some(ns), Some(name)) => line.push_str(&format!(" {ns}/{name}")),
                (Some(ns), None) => line.push_str(&format!(" {ns}/<no name>")),
                (None, Some(name)) => line.push_str(&format!(" {name}")),
                (None, None) => {}
            }
        }
        if let Some(field) = &self.field {
            line.push_str(&format!(": {field}"));
        }
        line.push_str(&format!(": {}; {}", self.issue, self.consequence()));
        // Names and keys come from the input: keep the report on one line.
        for c in line.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
