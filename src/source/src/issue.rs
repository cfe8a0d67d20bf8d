//! What is wrong with an object or a document, without saying where: the
//! [`Issue`] that both sources report. The typed conversion ([`crate::api`])
//! gives the validation issues (a bad CIDR, port, selector, ...), always with
//! a field path ([`crate::api::Invalid`]); the file reader adds those of text,
//! documents and identity (syntax, a missing kind, a duplicate, ...) and says
//! where in a [`crate::files::Problem`].
//!
//! Plain data only: no `k8s-openapi` types reach this file.

use std::fmt;

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

/// What is wrong, without saying where (an [`Invalid`](crate::api::Invalid) or a
/// [`Problem`](crate::files::Problem) says where).
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
    /// A container port name used twice in one container.
    #[error("{0:?} names another port of this container already")]
    DuplicatePortName(String),
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
    /// More than two policy types (the API server's limit, duplicates or not).
    #[error("{0} policy types listed: at most two (Ingress, Egress)")]
    PolicyTypeCount(usize),
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
