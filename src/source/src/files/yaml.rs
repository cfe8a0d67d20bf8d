//! One YAML document → a `serde_json::Value`, read by YAML 1.2: the
//! parser's events (`granit_parser`, through `serde_saphyr`) are built into
//! a value here, and every plain scalar is resolved by the core schema
//! (`yaml/scalar.rs`). So `y`, `yes`, `on`, `off`, `no` are strings, as are
//! `0b1`, `1_000` and `1:20`; only `true`/`false` (and their capitalised
//! forms) are booleans. Quoted and block scalars are always strings.
//!
//! Tags: `!!str` and `!` make a string; `!!int`, `!!float`, `!!bool` and
//! `!!null` must fit their type; other tags are ignored. A `%YAML 1.1`
//! directive changes nothing (YAML 1.2 reads 1.1 documents as 1.2).
//! Mapping keys are the key's text (`1: a`, `on: b` give the keys `"1"`,
//! `"on"`). Merge keys (`<<: *base`) are expanded as kubectl does; a
//! duplicate key is an error.
//!
//! Bounds against hostile input that is small on disk: collections nest at
//! most [`MAX_DEPTH`] deep (typing, copying and dropping a value recurse,
//! and much deeper values overflow a 2 MiB thread stack in a debug build),
//! and aliases copy at most [`MAX_ALIAS_NODES`] nodes in all (billion
//! laughs). The file's size bounds everything else: a `kind: List` of a
//! 10k-pod cluster has millions of nodes.

use std::collections::HashMap;

use serde_json::{Map, Value};
use serde_saphyr::granit_parser::{Event, Marker, Options, Parser, ScalarStyle, Tag};

use crate::issue::{Format, Issue};
use scalar::scalar_value;

mod scalar;

/// Deepest nesting of collections in a document.
const MAX_DEPTH: usize = 64;
/// Most nodes that aliases may copy in one document.
const MAX_ALIAS_NODES: usize = 100_000;

/// Parses one YAML document; `lines_before` (the file's lines before it)
/// makes the line numbers in errors those of the file.
pub(super) fn value(chunk: &str, lines_before: usize) -> Result<Value, Issue> {
    let builder = Builder {
        lines_before,
        stack: Vec::new(),
        anchors: HashMap::new(),
        copied: 0,
        root: None,
        documents: 0,
    };
    builder.run(chunk).map_err(|message| Issue::Syntax {
        format: Format::Yaml,
        message,
    })
}

/// A mapping key being read: its text, or a merge key (`<<`).
enum Key {
    Text(String, Marker),
    Merge(Marker),
}

/// A collection being read.
enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        anchor: usize,
        map: Map<String, Value>,
        key: Option<Key>,
        merges: Vec<(Value, Marker)>,
    },
}

struct Builder {
    lines_before: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    /// Nodes copied by aliases so far.
    copied: usize,
    root: Option<Value>,
    documents: usize,
}

impl Builder {
    fn run(mut self, chunk: &str) -> Result<Value, String> {
        let mut options = Options::default();
        options.set_emit_comments(false);
        // The parser stops runaway nesting itself; `open` says why first.
        options.flow_nesting_limit = MAX_DEPTH * 2;
        options.block_nesting_limit = MAX_DEPTH * 2;
        let mut parser = Parser::new_from_str_with_options(chunk, options);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| {
                let m = e.marker();
                self.message(&e.info(), m.line(), m.col())
            })?;
            let at = span.start;
            match event {
                Event::DocumentStart(..) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        let what = "a second document needs a `---` line before it";
                        return Err(self.at(&at, what));
                    }
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.scalar(&text, style, tag.as_deref(), anchor, &at)?
                }
                Event::SequenceStart(_, anchor, _) => {
                    let items = Vec::new();
                    self.open(Frame::Seq { anchor, items }, &at)?
                }
                Event::MappingStart(_, anchor, _) => {
                    let (map, key, merges) = (Map::new(), None, Vec::new());
                    let frame = Frame::Map {
                        anchor,
                        map,
                        key,
                        merges,
                    };
                    self.open(frame, &at)?
                }
                Event::SequenceEnd | Event::MappingEnd => self.close(&at)?,
                Event::Alias(id) => self.alias(id, &at)?,
                _ => {}
            }
        }
        Ok(self.root.unwrap_or(Value::Null))
    }

    /// `what at line L, column C`, the line counted in the file.
    fn message(&self, what: &str, line: usize, col: usize) -> String {
        let line = line + self.lines_before;
        format!("{what} at line {line}, column {}", col + 1)
    }

    fn at(&self, m: &Marker, what: &str) -> String {
        self.message(what, m.line(), m.col())
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn open(&mut self, frame: Frame, at: &Marker) -> Result<(), String> {
        if self.expecting_key() {
            return Err(self.at(at, "a mapping key must be a scalar"));
        }
        if self.stack.len() >= MAX_DEPTH {
            let what = format!("collections nested deeper than {MAX_DEPTH}");
            return Err(self.at(at, &what));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, at: &Marker) -> Result<(), String> {
        let (value, anchor) = match self.stack.pop() {
            Some(Frame::Seq { anchor, items }) => (Value::Array(items), anchor),
            Some(Frame::Map {
                anchor,
                mut map,
                merges,
                ..
            }) => {
                for (source, at) in merges {
                    merge(&mut map, source).map_err(|what| self.at(&at, what))?;
                }
                (Value::Object(map), anchor)
            }
            None => return Err(self.at(at, "unbalanced end of a collection")),
        };
        self.node(value, anchor, at)
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        anchor: usize,
        at: &Marker,
    ) -> Result<(), String> {
        let value = scalar_value(text, style, tag);
        if !self.expecting_key() {
            let value = value.map_err(|what| self.at(at, &what))?;
            return self.node(value, anchor, at);
        }
        // A key is its text, whatever it would resolve to as a value.
        if anchor != 0 {
            let value = value.unwrap_or_else(|_| Value::String(text.to_owned()));
            self.anchors.insert(anchor, value);
        }
        let plain_untagged = style == ScalarStyle::Plain && tag.is_none();
        let merge_tag =
            tag.is_some_and(|t| t.handle() == "tag:yaml.org,2002:" && t.suffix() == "merge");
        let key = match (plain_untagged && text == "<<") || merge_tag {
            true => Key::Merge(*at),
            false => Key::Text(text.to_owned(), *at),
        };
        self.set_key(key);
        Ok(())
    }

    fn set_key(&mut self, key: Key) {
        if let Some(Frame::Map { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some(key);
        }
    }

    fn alias(&mut self, id: usize, at: &Marker) -> Result<(), String> {
        let Some(value) = self.anchors.get(&id) else {
            return Err(self.at(at, "an alias refers to a collection it is inside of"));
        };
        self.copied += size(value);
        if self.copied > MAX_ALIAS_NODES {
            let what = format!("aliases copy more than {MAX_ALIAS_NODES} nodes");
            return Err(self.at(at, &what));
        }
        let value = value.clone();
        self.node(value, 0, at)
    }

    /// A complete node: remembered under its anchor, then placed in its
    /// parent (as a key if the parent mapping waits for one).
    fn node(&mut self, value: Value, anchor: usize, at: &Marker) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        let key = match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                return Ok(());
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                return Ok(());
            }
            Some(Frame::Map { key, .. }) => key.take(),
        };
        let key = match key {
            Some(key) => key,
            None => {
                // An aliased key: its value as text.
                let text = match value {
                    Value::String(s) => s,
                    Value::Array(_) | Value::Object(_) => {
                        return Err(self.at(at, "a mapping key must be a scalar"))
                    }
                    other => other.to_string(),
                };
                self.set_key(Key::Text(text, *at));
                return Ok(());
            }
        };
        let Some(Frame::Map { map, merges, .. }) = self.stack.last_mut() else {
            return Ok(());
        };
        match key {
            Key::Merge(at) => merges.push((value, at)),
            Key::Text(k, _) if !map.contains_key(&k) => {
                map.insert(k, value);
            }
            Key::Text(k, key_at) => {
                return Err(self.at(&key_at, &format!("duplicate mapping key {k:?}")));
            }
        }
        Ok(())
    }
}

/// Adds the entries of a merge key's value (a mapping, or a list of them,
/// the earlier winning) that `map` does not have yet.
fn merge(map: &mut Map<String, Value>, source: Value) -> Result<(), &'static str> {
    let sources = match source {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(m) => Ok(m),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| "a merge key (<<) needs a mapping or a list of mappings")?,
        _ => return Err("a merge key (<<) needs a mapping or a list of mappings"),
    };
    for source in sources {
        for (k, v) in source {
            map.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Nodes in a value.
fn size(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(|v| 1 + size(v)).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
mod tests;
