//! Manifest files → [`model::Snapshot`](nftpolicy_core::model::Snapshot): the offline
//! source, reading what `kubectl get ns,pods,networkpolicies -A -o yaml`
//! prints.
//!
//! - A path is a file, or a directory whose `*.yaml`, `*.yml` and `*.json`
//!   files are read in name order. Directories are not descended into and
//!   hidden files are skipped: a mounted ConfigMap keeps its real files under
//!   `..data/` and shows them once through top-level links, and editors
//!   leave `.#x.yaml` lock links behind.
//! - `*.json` files are JSON (one value or a stream); anything else is YAML,
//!   split into documents at `---` lines as kubectl splits them.
//! - A document is one object, or a `kind: List` (or `PodList`, ...) whose
//!   items are objects. Namespaces, Pods and NetworkPolicies are read; other
//!   kinds are counted in [`Loaded::ignored`] and otherwise skipped.
//! - A bad document or object is reported as a [`Problem`] (file, document,
//!   item, kind, namespace/name, field) and skipped; everything else loads.
//!   Of two objects with the same kind and namespace/name the first is kept.
//!   Only a path that cannot be read at all is a [`LoadError`].
//!
//! Choices where the API server would not have seen the file:
//!
//! - A missing `metadata.namespace` is `default`; a missing `apiVersion` is
//!   the usual one for the kind; a Pod may leave out `spec.containers`.
//! - An object claims its kind and namespace/name when met, even if it then
//!   fails validation: a later object of the same identity is reported as a
//!   duplicate rather than silently taking its place.
//! - A quoted port of digits (`port: "80"`) is an error, as in the API: it is
//!   neither a number nor a valid port name.
//! - YAML is read by YAML 1.2, as its specification says, not by the YAML
//!   1.1 rules kubectl's reader keeps: only `true` and `false` (also
//!   `True`, `TRUE`, `False`, `FALSE`) are booleans, so a namespace named
//!   `y` or a label value `on` or `no` is the string written. Integers are
//!   decimal, `0o` octal or `0x` hex, so `1_000`, `1:20` and `0b101` are
//!   strings too; `0777` is the decimal 777 (YAML 1.1 read it as octal).
//!   `name: true` or `name: 0777` is still a type error naming the field.
//!   JSON files are JSON. See `files/yaml.rs`.
//! - Names, namespaces and label keys and values are not checked against
//!   the API's syntax (DNS-1123, label characters): `name: Y` or a label
//!   value `1:20` loads, though the API server would refuse the object. No
//!   policy decision depends on their spelling.
//! - ipBlock CIDRs with host bits set (`10.0.0.1/24`) are taken as their
//!   network, as Go's `net.ParseCIDR` does.
//!
//! Each object is deserialized into its typed `k8s-openapi` object (a type
//! error names its exact field) and converted by [`crate::api`], the
//! conversion the agent's watched objects go through, so a file and the API
//! agree on every object. Callers see only `model` types.

mod convert;
mod documents;
mod problem;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use problem::{Format, Issue, LoadError, Problem, Skipped};

use documents::{Defaults, Header, Shape};
use nftpolicy_core::model::Snapshot;

/// What loading produced: the snapshot of every good object, and what was wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Every namespace, pod and policy that loaded.
    pub snapshot: Snapshot,
    /// Every problem, in the order met (files in the order read).
    pub problems: Vec<Problem>,
    /// Objects of kinds this tool does not use, by `Kind (apiVersion)`.
    pub ignored: BTreeMap<String, usize>,
}

/// Reads every path (file or directory) into one snapshot.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut loader = Loader::new();
    for path in paths {
        loader.add_path(path)?;
    }
    Ok(loader.finish())
}

/// The kinds this tool reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Namespace,
    Pod,
    NetworkPolicy,
}

impl Kind {
    /// `(kind, name, apiVersion)` of each kind we read.
    const ALL: [(Kind, &'static str, &'static str); 3] = [
        (Kind::Namespace, "Namespace", "v1"),
        (Kind::Pod, "Pod", "v1"),
        (Kind::NetworkPolicy, "NetworkPolicy", "networking.k8s.io/v1"),
    ];
}

/// Whether an apiVersion belongs to a built-in API group: the core group,
/// a group without a dot (CRD groups must have one), or `*.k8s.io`.
fn is_builtin(api_version: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    !group.contains('.') || group.ends_with(".k8s.io") || group.ends_with(".kubernetes.io")
}

/// Where an object was read.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    document: usize,
    item: Option<usize>,
}

/// Accumulates files into one [`Loaded`]; [`load`] is the usual entry point.
/// Duplicates are found across everything added to one loader.
#[derive(Debug, Default)]
pub struct Loader {
    loaded: Loaded,
    seen: BTreeMap<(Kind, String, String), Origin>,
}

impl Loader {
    /// An empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file, or the `*.yaml`/`*.yml`/`*.json` files of a directory in
    /// name order (not recursive; hidden files skipped).
    pub fn add_path(&mut self, path: &Path) -> Result<(), LoadError> {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return self.add_file(path);
        }
        let list_err = |source| LoadError::ListDir {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let wanted = [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e));
            if wanted && !name.starts_with('.') {
                files.push(entry.path());
            }
        }
        files.sort();
        for file in files {
            if !std::fs::metadata(&file).is_ok_and(|m| m.is_dir()) {
                self.add_file(&file)?;
            }
        }
        Ok(())
    }

    /// Adds one file: JSON if its name ends in `.json`, YAML otherwise.
    pub fn add_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let format = match path.extension() {
            Some(ext) if ext == "json" => Format::Json,
            _ => Format::Yaml,
        };
        self.add_bytes(path, &bytes, format);
        Ok(())
    }

    /// Adds file content: UTF-8 (a byte-order mark is dropped) or UTF-16
    /// with a byte-order mark, as Windows shells write redirected output.
    /// `file` is only used in reports.
    pub fn add_bytes(&mut self, file: &Path, bytes: &[u8], format: Format) {
        match decode(bytes) {
            Ok(text) => self.add_text(file, &text, format),
            Err(e) => self.loaded.problems.push(Problem {
                file: file.to_owned(),
                document: None,
                item: None,
                kind: None,
                namespace: None,
                name: None,
                field: None,
                issue: Issue::NotText(e),
                skipped: Skipped::File,
            }),
        }
    }

    /// Adds file text; `file` is only used in reports.
    pub fn add_text(&mut self, file: &Path, text: &str, format: Format) {
        for doc in documents::parse(text, format) {
            let origin = Origin {
                file: file.to_owned(),
                document: doc.index,
                item: None,
            };
            let skipped = match format {
                Format::Json => Skipped::RestOfFile,
                Format::Yaml => Skipped::Document,
            };
            match doc.value {
                Ok(value) => self.add_document(&origin, value),
                Err(issue) => self.report(&origin, None, None, issue, skipped),
            }
        }
    }

    /// Adds one object (or `kind: List`) already decoded as JSON; `source`
    /// names it in reports. (A typed API object needs no JSON: convert it
    /// with [`crate::api`].)
    pub fn add_value(&mut self, source: &Path, value: Value) {
        let origin = Origin {
            file: source.to_owned(),
            document: 0,
            item: None,
        };
        self.add_document(&origin, value);
    }

    /// The result.
    pub fn finish(self) -> Loaded {
        self.loaded
    }

    fn add_document(&mut self, origin: &Origin, value: Value) {
        let kind = value.get("kind").and_then(Value::as_str).map(str::to_owned);
        let (items, defaults) = match documents::shape(value) {
            Ok(Shape::Empty) => return,
            Ok(Shape::Object(v)) => return self.add_object(origin, v, &Defaults::default()),
            Ok(Shape::List { items, defaults }) => (items, defaults),
            Err((field, issue)) => {
                let h = Header {
                    kind,
                    ..Header::default()
                };
                return self.report(origin, Some(&h), field, issue, Skipped::Document);
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let origin = Origin {
                item: Some(i),
                ..origin.clone()
            };
            let nested = matches!(item.get("kind"), Some(Value::String(k)) if k.ends_with("List"));
            if nested {
                let h = documents::header(&item, &defaults).0;
                self.report(&origin, Some(&h), None, Issue::NestedList, Skipped::Object);
            } else {
                self.add_object(&origin, item, &defaults);
            }
        }
    }

    fn add_object(&mut self, origin: &Origin, value: Value, defaults: &Defaults) {
        let (mut h, checked) = documents::header(&value, defaults);
        if let Err((field, issue)) = checked {
            let field = Some(field).filter(|f| !f.is_empty());
            return self.report(origin, Some(&h), field, issue, Skipped::Object);
        }
        let kind = match self.kind_of(&h) {
            Ok(Some(kind)) => kind,
            Ok(None) => return,
            Err(issue) => {
                return self.report(origin, Some(&h), Some("apiVersion"), issue, Skipped::Object)
            }
        };
        if kind == Kind::Namespace {
            h.namespace = None;
        } else if h.namespace.is_none() {
            h.namespace = Some("default".to_owned());
        }
        let Some(name) = h.name.clone() else {
            let issue = Issue::MissingName;
            return self.report(
                origin,
                Some(&h),
                Some("metadata.name"),
                issue,
                Skipped::Object,
            );
        };
        let key = (kind, h.namespace.clone().unwrap_or_default(), name);
        if let Some(first) = self.seen.get(&key) {
            let first = problem::location(&first.file, Some(first.document), first.item);
            let issue = Issue::Duplicate { first };
            return self.report(origin, Some(&h), None, issue, Skipped::Object);
        }
        self.seen.insert(key, origin.clone());
        let snapshot = &mut self.loaded.snapshot;
        let added = match kind {
            Kind::Namespace => convert::namespace(value).map(|n| snapshot.add_namespace(n)),
            Kind::Pod => convert::pod(value).map(|p| snapshot.add_pod(p)),
            Kind::NetworkPolicy => convert::policy(value).map(|p| snapshot.add_policy(p)),
        };
        if let Err(invalid) = added {
            let field = Some(invalid.field.as_str()).filter(|f| !f.is_empty());
            self.report(origin, Some(&h), field, invalid.issue, Skipped::Object);
        }
    }

    /// Which of our kinds `h` is: `Ok(None)` (and counted) for other kinds,
    /// `Err` for one of ours at another apiVersion of a built-in API group
    /// (`extensions/v1beta1`, a typo'd `v1`). A kind of the same name from a
    /// CRD group (Calico's and Antrea's NetworkPolicy) is another kind. A
    /// missing apiVersion is taken to be the usual one.
    fn kind_of(&mut self, h: &Header) -> Result<Option<Kind>, Issue> {
        let kind = h.kind.as_deref().unwrap_or_default();
        let api_version = h.api_version.as_deref();
        if let Some((k, name, expected)) = Kind::ALL.into_iter().find(|(_, n, _)| *n == kind) {
            match api_version {
                None => return Ok(Some(k)),
                Some(v) if v == expected => return Ok(Some(k)),
                Some(v) if is_builtin(v) => {
                    let found = v.to_owned();
                    return Err(Issue::ApiVersion {
                        kind: name,
                        found,
                        expected,
                    });
                }
                Some(_) => {}
            }
        }
        let label = match api_version {
            Some(v) => format!("{kind} ({v})"),
            None => kind.to_owned(),
        };
        *self.loaded.ignored.entry(label).or_default() += 1;
        Ok(None)
    }

    fn report(
        &mut self,
        origin: &Origin,
        header: Option<&Header>,
        field: Option<&str>,
        issue: Issue,
        skipped: Skipped,
    ) {
        let h = header.cloned().unwrap_or_default();
        self.loaded.problems.push(Problem {
            file: origin.file.clone(),
            document: Some(origin.document),
            item: origin.item,
            kind: h.kind,
            namespace: h.namespace,
            name: h.name,
            field: field.map(str::to_owned),
            issue,
            skipped,
        });
    }
}

/// Bytes → text: UTF-8 (BOM dropped) or UTF-16 with a BOM.
fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |bytes: &[u8], le: bool| {
        let units = bytes.chunks(2).map(|c| match (c, le) {
            ([a, b], true) => u16::from_le_bytes([*a, *b]),
            ([a, b], false) => u16::from_be_bytes([*a, *b]),
            // An odd trailing byte: not UTF-16.
            _ => 0xD800,
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| format!("bad UTF-16: {e}"))
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest).map(str::to_owned),
        [0xFF, 0xFE, rest @ ..] => return utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => return utf16(rest, false),
        _ => std::str::from_utf8(bytes).map(str::to_owned),
    }
    .map_err(|e| e.to_string())
}
