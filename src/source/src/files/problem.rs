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

/// The input syntax of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, possibly several documents separated by `---` lines.
    Yaml,
    /// JSON, one value or a stream of values.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        })
    }
}

/// What is wrong, without saying where (a [`Problem`] says where).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Issue {
    /// The file is neither UTF-8 nor UTF-16 with a byte-order mark.
    #[error("not UTF-8 text ({0})")]
    NotText(String),
    /// A document does not parse.
    #[error("not valid {format}: {message}")]
    Syntax {
        /// YAML or JSON.
        format: Format,
        /// The parser's message, with the line and column in the file.
        message: String,
    },
    /// A document (or a list item) is a scalar or a list, not an object.
    #[error("expected an object with apiVersion and kind, found {0}")]
    NotAnObject(&'static str),
    /// `kind` is absent.
    #[error("is missing")]
    MissingKind,
    /// `metadata.name` is absent or empty.
    #[error("is missing")]
    MissingName,
    /// A field has the wrong type or shape (the deserializer's message).
    #[error("{0}")]
    Type(String),
    /// A known kind with an apiVersion this tool does not read.
    #[error("apiVersion {found:?} is not supported for {kind}; expected {expected:?}")]
    ApiVersion {
        /// The kind.
        kind: &'static str,
        /// What the document says.
        found: String,
        /// What we read.
        expected: &'static str,
    },
    /// A `List` item that is itself a `List`.
    #[error("a list inside a list is not supported")]
    NestedList,
    /// An IP address that does not parse.
    #[error("{0:?} is not an IP address")]
    Ip(String),
    /// A CIDR that does not parse.
    #[error("{0:?} is not a CIDR (address/prefix)")]
    Cidr(String),
    /// An `except` block that is not a strict subset of its `cidr`.
    #[error("{except} is not inside cidr {cidr}")]
    ExceptOutside {
        /// The `except` entry.
        except: String,
        /// The block it should be carved out of.
        cidr: String,
    },
    /// A port number outside 1..=65535.
    #[error("{0} is out of range 1-65535")]
    PortRange(i64),
    /// A string port that is not a valid IANA_SVC_NAME.
    #[error("{value:?} is not a valid port name: {reason}")]
    PortName {
        /// The string.
        value: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A protocol other than TCP, UDP and SCTP.
    #[error("{0:?} is not a protocol: use TCP, UDP or SCTP")]
    Protocol(String),
    /// `endPort` without a `port`.
    #[error("endPort {0} needs a numeric port")]
    EndPortWithoutPort(i32),
    /// `endPort` with a named `port`.
    #[error("endPort {end_port} needs a numeric port, not the named port {name:?}")]
    EndPortNamed {
        /// The `endPort` value.
        end_port: i32,
        /// The port name.
        name: String,
    },
    /// `endPort` below `port`.
    #[error("{end_port} is below port {port}")]
    EndPortBelow {
        /// The `endPort` value.
        end_port: i32,
        /// The `port` value.
        port: u16,
    },
    /// A policy type other than Ingress and Egress.
    #[error("{0:?} is not a policy type: use Ingress or Egress")]
    PolicyType(String),
    /// A peer with none of podSelector, namespaceSelector and ipBlock.
    #[error("a peer needs podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    /// An ipBlock in the same peer as a selector.
    #[error("ipBlock cannot be combined with podSelector or namespaceSelector")]
    IpBlockWithSelector,
    /// A matchExpressions operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{0:?} is not an operator: use In, NotIn, Exists or DoesNotExist")]
    Operator(String),
    /// In/NotIn without values.
    #[error("operator {0} needs at least one value")]
    ValuesRequired(&'static str),
    /// Exists/DoesNotExist with values.
    #[error("operator {0} takes no values")]
    ValuesForbidden(&'static str),
    /// A matchExpressions entry with an empty key.
    #[error("is empty")]
    EmptyKey,
    /// A second object with the same kind and namespace/name.
    #[error("already defined at {first}; the first one is kept")]
    Duplicate {
        /// Where the first one was read (`file: document N`).
        first: String,
    },
}

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
