//! From file text to documents (`serde_json::Value`s), and from a document
//! to the objects it holds: a `kind: List` (or `PodList`, ...) gives its
//! items, anything else is one object. Also reads the object's header
//! (apiVersion, kind, namespace, name) for naming and dispatch.
//!
//! YAML documents are split the way kubectl splits them: at lines that start
//! with `---` followed by nothing but blanks or a comment. Each document is
//! then parsed on its own (by YAML 1.2, in `yaml.rs`), so a document that
//! does not parse is reported and the next one still loads.

use serde_json::Value;

use super::problem::{Format, Issue};

/// One document of a file, parsed or not.
pub(super) struct Document {
    /// 0-based index in the file.
    pub index: usize,
    /// The parsed value (`Null` for an empty document).
    pub value: Result<Value, Issue>,
}

/// Splits and parses `text`. For JSON, a syntax error ends the file (a JSON
/// stream cannot be resynchronised), so it is always the last document.
pub(super) fn parse(text: &str, format: Format) -> Vec<Document> {
    match format {
        Format::Yaml => yaml_documents(text),
        Format::Json => json_documents(text),
    }
}

fn json_documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (index, value) in stream.enumerate() {
        let value = value.map_err(|e| Issue::Syntax {
            format: Format::Json,
            message: e.to_string(),
        });
        let stop = value.is_err();
        out.push(Document { index, value });
        if stop {
            break;
        }
    }
    out
}

/// Whether `line` separates YAML documents, as kubectl's YAML reader decides.
fn is_separator(line: &str) -> bool {
    match line.strip_prefix("---") {
        Some(rest) => {
            let rest = rest.trim();
            rest.is_empty() || rest.starts_with('#')
        }
        None => false,
    }
}

/// Whether a chunk holds anything but blank lines, comments and directives.
fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|l| {
        let l = l.trim();
        !(l.is_empty() || l.starts_with('#') || l.starts_with('%'))
    })
}

fn yaml_documents(text: &str) -> Vec<Document> {
    // (start byte, lines before the chunk, end byte)
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) {
            chunks.push((start, start_line, offset));
            start = offset + line.len();
            start_line = lineno + 1;
        }
        offset += line.len();
    }
    chunks.push((start, start_line, text.len()));
    // Before the first `---` there is a document only if something is written there.
    if chunks.len() > 1 && !has_content(&text[chunks[0].0..chunks[0].2]) {
        chunks.remove(0);
    }
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, (start, lines_before, end))| Document {
            index,
            value: super::yaml::value(&text[start..end], lines_before),
        })
        .collect()
}

/// What a document holds.
pub(super) enum Shape {
    /// Nothing (an empty document).
    Empty,
    /// One object.
    Object(Value),
    /// The items of a `List`, with the kind and apiVersion their items
    /// default to (`PodList` items may leave out their own).
    List {
        /// `items`, in order.
        items: Vec<Value>,
        /// Defaults for items without `kind` / `apiVersion`.
        defaults: Defaults,
    },
}

/// The apiVersion and kind an object has when it does not say.
#[derive(Debug, Clone, Default)]
pub(super) struct Defaults {
    /// Default `apiVersion`.
    pub api_version: Option<String>,
    /// Default `kind`.
    pub kind: Option<String>,
}

/// Sorts a document into nothing, one object, or a list of items. An error
/// carries the field it concerns.
pub(super) fn shape(value: Value) -> Result<Shape, (Option<&'static str>, Issue)> {
    let mut map = match value {
        Value::Null => return Ok(Shape::Empty),
        Value::Object(map) => map,
        other => return Err((None, Issue::NotAnObject(type_name(&other)))),
    };
    let kind = match map.get("kind") {
        Some(Value::String(kind)) if kind.ends_with("List") => kind.clone(),
        _ => return Ok(Shape::Object(Value::Object(map))),
    };
    let items = match map.remove("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            let msg = format!("expected a list of objects, found {}", type_name(&other));
            return Err((Some("items"), Issue::Type(msg)));
        }
    };
    // `kind: List` items say what they are; `PodList` items may not.
    let defaults = match kind.strip_suffix("List") {
        Some(item_kind) if !item_kind.is_empty() => Defaults {
            api_version: map
                .get("apiVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
            kind: Some(item_kind.to_owned()),
        },
        _ => Defaults::default(),
    };
    Ok(Shape::List { items, defaults })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What an object says about itself, read before it is converted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Header {
    /// `apiVersion`, if given.
    pub api_version: Option<String>,
    /// `kind`, if given.
    pub kind: Option<String>,
    /// `metadata.namespace`, if given and not empty.
    pub namespace: Option<String>,
    /// `metadata.name`, if given and not empty.
    pub name: Option<String>,
}

/// Reads the header of an object, filling `apiVersion` and `kind` from
/// `defaults` when absent. An error carries the field it concerns; the
/// header read until then names the object in the report.
pub(super) fn header(
    value: &Value,
    defaults: &Defaults,
) -> (Header, Result<(), (&'static str, Issue)>) {
    let mut h = Header::default();
    let checked = match value.as_object() {
        Some(map) => read_header(map, defaults, &mut h),
        None => Err(("", Issue::NotAnObject(type_name(value)))),
    };
    (h, checked)
}

type Fields = serde_json::Map<String, Value>;

fn read_header(
    map: &Fields,
    defaults: &Defaults,
    h: &mut Header,
) -> Result<(), (&'static str, Issue)> {
    h.kind = string(map, "kind", "kind")?.or_else(|| defaults.kind.clone());
    h.api_version =
        string(map, "apiVersion", "apiVersion")?.or_else(|| defaults.api_version.clone());
    let meta = match map.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => Some(meta),
        Some(other) => {
            let msg = format!("expected an object, found {}", type_name(other));
            return Err(("metadata", Issue::Type(msg)));
        }
    };
    if let Some(meta) = meta {
        h.namespace = string(meta, "namespace", "metadata.namespace")?;
        h.name = string(meta, "name", "metadata.name")?;
    }
    if h.kind.is_none() {
        return Err(("kind", Issue::MissingKind));
    }
    Ok(())
}

/// A string field; `None` when absent, null or empty.
fn string(
    map: &Fields,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, (&'static str, Issue)> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(other) => {
            let msg = format!("expected a string, found {}", type_name(other));
            Err((field, Issue::Type(msg)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes_and_values(text: &str) -> Vec<(usize, String)> {
        parse(text, Format::Yaml)
            .into_iter()
            .map(|d| {
                let v = match d.value {
                    Ok(v) => v.to_string(),
                    Err(e) => format!("error: {e}"),
                };
                (d.index, v)
            })
            .collect()
    }

    #[test]
    fn yaml_splitting() {
        let cases = [
            ("one document", "a: 1\n", vec![(0, r#"{"a":1}"#)]),
            ("leading separator", "---\na: 1\n", vec![(0, r#"{"a":1}"#)]),
            (
                "comment before leading separator",
                "# dump\n---\na: 1\n",
                vec![(0, r#"{"a":1}"#)],
            ),
            (
                "empty documents count",
                "a: 1\n---\n---\nb: 2\n---\n",
                vec![
                    (0, r#"{"a":1}"#),
                    (1, "null"),
                    (2, r#"{"b":2}"#),
                    (3, "null"),
                ],
            ),
            (
                "separator with comment, CRLF",
                "a: 1\r\n--- # next\r\nb: 2\r\n",
                vec![(0, r#"{"a":1}"#), (1, r#"{"b":2}"#)],
            ),
            (
                "indented or longer dashes are content",
                "a: |\n  ---\n  x\n",
                vec![(0, r#"{"a":"---\nx\n"}"#)],
            ),
            ("empty file", "", vec![(0, "null")]),
        ];
        for (name, text, want) in cases {
            let want: Vec<(usize, String)> =
                want.into_iter().map(|(i, s)| (i, s.to_owned())).collect();
            assert_eq!(indexes_and_values(text), want, "case: {name}");
        }
    }

    #[test]
    fn yaml_error_keeps_going_and_counts_file_lines() {
        let docs = indexes_and_values("a: 1\n---\nb: [1\n---\nc: 3\n");
        assert_eq!(docs.len(), 3, "{docs:?}");
        assert!(
            docs[1].1.contains("line 3"),
            "line is file-relative: {docs:?}"
        );
        assert_eq!(docs[2].1, r#"{"c":3}"#);
    }

    #[test]
    fn json_stream_stops_at_syntax_error() {
        let docs = parse(r#"{"a":1} {"b":2} {"c": } {"d":4}"#, Format::Json);
        assert_eq!(docs.len(), 3);
        assert!(docs[2].value.is_err());
    }

    #[test]
    fn header_defaults_and_errors() {
        let v: Value = serde_json::json!({"metadata": {"name": "web", "namespace": ""}});
        let pod_list = Defaults {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
        };
        let (h, r) = header(&v, &pod_list);
        assert!(r.is_ok());
        assert_eq!(h.kind.as_deref(), Some("Pod"));
        assert_eq!(h.namespace, None, "empty namespace is no namespace");
        let (_, r) = header(&v, &Defaults::default());
        assert_eq!(r.err().map(|e| e.0), Some("kind"));
        let bad = serde_json::json!({"kind": 5});
        assert_eq!(header(&bad, &pod_list).1.err().map(|e| e.0), Some("kind"));
        let bad = serde_json::json!({"kind": "Pod", "metadata": {"name": false}});
        let (h, r) = header(&bad, &pod_list);
        assert_eq!(r.err().map(|e| e.0), Some("metadata.name"));
        assert_eq!(
            h.kind.as_deref(),
            Some("Pod"),
            "kind still names the object"
        );
    }
}
