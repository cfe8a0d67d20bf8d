//! Tests of the YAML 1.2 reader (`yaml.rs`): scalar resolution by the core
//! schema, tags, keys, anchors and merge keys, and the bounds and messages
//! of errors.

use serde_json::{json, Value};

use super::*;

fn one(text: &str) -> Result<Value, String> {
    match value(&format!("a: {text}\n"), 0) {
        Ok(v) => Ok(v["a"].clone()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn plain_scalars_by_the_core_schema() {
    let strings = [
        "y",
        "Y",
        "n",
        "N",
        "yes",
        "Yes",
        "YES",
        "no",
        "No",
        "NO",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "tRUE",
        "nULL",
        "1_000",
        "1:20",
        "1:20:30",
        "0b101",
        "0B1",
        "0X1F",
        "0O17",
        "+0x1F",
        "-0o17",
        "0x",
        "0o8",
        "0xG",
        "-.nan",
        "+.nan",
        "nan",
        "inf",
        ".infinity",
        "1e",
        "1e+",
        "e3",
        ".",
        "+",
        "1.2.3",
        "2001-12-14",
        "10.0.0.0/8",
        "=",
        "<<",
        "1_0.5",
    ];
    for s in strings {
        assert_eq!(one(s), Ok(Value::from(s)), "case: {s}");
    }
    // (text, value)
    let others = [
        ("", Value::Null),
        ("~", Value::Null),
        ("null", Value::Null),
        ("Null", Value::Null),
        ("NULL", Value::Null),
        ("true", json!(true)),
        ("True", json!(true)),
        ("TRUE", json!(true)),
        ("false", json!(false)),
        ("False", json!(false)),
        ("FALSE", json!(false)),
        ("0", json!(0)),
        ("-0", json!(0)),
        ("+12", json!(12)),
        ("-12", json!(-12)),
        ("18446744073709551615", json!(u64::MAX)),
        ("18446744073709551616", json!(18446744073709551616.0)),
        ("0o17", json!(15)),
        ("0x1F", json!(31)),
        ("0xff", json!(255)),
        ("1.5", json!(1.5)),
        ("1.", json!(1.0)),
        (".5", json!(0.5)),
        ("-.5", json!(-0.5)),
        ("1e3", json!(1000.0)),
        ("1.5E+3", json!(1500.0)),
        ("12e03", json!(12000.0)),
        ("01.5", json!(1.5)),
    ];
    for (text, want) in others {
        assert_eq!(one(text), Ok(want), "case: {text:?}");
    }
    for s in [
        ".inf", "-.inf", "+.Inf", ".INF", ".nan", ".NaN", ".NAN", "1e999",
    ] {
        let err = one(s).expect_err(s);
        assert!(err.contains("JSON cannot hold"), "case: {s}: {err}");
        assert!(err.contains("line 1, column 4"), "case: {s}: {err}");
    }
}

#[test]
fn quoted_block_and_tagged_scalars() {
    // (text, value)
    let cases = [
        ("'on'", json!("on")),
        ("\"true\"", json!("true")),
        ("'80'", json!("80")),
        ("''", json!("")),
        ("|\n  yes\n", json!("yes\n")),
        (">-\n  1e3\n", json!("1e3")),
        ("!!str true", json!("true")),
        ("!!str 80", json!("80")),
        ("! 80", json!("80")),
        ("!!int '80'", json!(80)),
        ("!!int 0777", json!(777)),
        ("!!int 0x10", json!(16)),
        ("!!float 1", json!(1.0)),
        ("!!float 0777", json!(777.0)),
        ("!!float 0x10", json!(16.0)),
        ("!!bool 'false'", json!(false)),
        ("!!null ''", Value::Null),
        ("!custom yes", json!("yes")),
        ("!custom 5", json!(5)),
        ("!!binary aGVsbG8=", json!("aGVsbG8=")),
    ];
    for (text, want) in cases {
        assert_eq!(one(text), Ok(want), "case: {text:?}");
    }
    for (text, msg) in [
        ("!!int yes", "\"yes\" is not an integer"),
        ("!!bool yes", "\"yes\" is not a boolean"),
        ("!!null no", "\"no\" is not null"),
        ("!!float x", "\"x\" is not a number"),
    ] {
        let err = one(text).expect_err(text);
        assert!(err.contains(msg), "case: {text}: {err}");
    }
}

#[test]
fn keys_are_their_text() {
    let v = value("y: 1\non: 2\n1: 3\ntrue: 4\n0x1F: 5\n'null': 6\n~: 7\n", 0).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut want = ["y", "on", "1", "true", "0x1F", "null", "~"];
    want.sort_unstable();
    assert_eq!(keys, want);
    let v = value("a: &k 0x1F\n*k : b\n", 0).unwrap();
    assert_eq!(
        v,
        json!({"a": 31, "31": "b"}),
        "an aliased key is its value"
    );
    let err = value("? [a]\n: b\n", 0)
        .expect_err("complex key")
        .to_string();
    assert!(err.contains("a mapping key must be a scalar"), "{err}");
    let err = value("a: 1\nb: 2\na: 3\n", 4)
        .expect_err("duplicate")
        .to_string();
    assert!(
        err.contains("duplicate mapping key \"a\" at line 7"),
        "{err}"
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let text = "base: &base {app: web, tier: on}\n\
        other: &other {tier: db, env: prod}\n\
        one: {<<: *base, app: api}\n\
        two: {<<: [*other, *base]}\n\
        copy: *base\n\
        '<<': quoted\n";
    let v = value(text, 0).unwrap();
    assert_eq!(
        v["one"],
        json!({"app": "api", "tier": "on"}),
        "explicit key wins"
    );
    assert_eq!(
        v["two"],
        json!({"app": "web", "tier": "db", "env": "prod"}),
        "earlier merge wins"
    );
    assert_eq!(v["copy"], v["base"]);
    assert_eq!(v["<<"], json!("quoted"), "a quoted << is a plain key");
    let err = value("a: {<<: 5}\n", 0).expect_err("bad merge").to_string();
    assert!(err.contains("needs a mapping"), "{err}");
    let err = value("a: &a [*a]\n", 0).expect_err("recursive").to_string();
    assert!(err.contains("inside of"), "{err}");
}

#[test]
fn nesting_and_aliases_are_bounded_not_fatal() {
    let flow = |n: usize| format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
    let block = |n: usize| (0..n).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    assert!(
        value(&flow(60), 0).is_ok(),
        "nesting like a deep CRD schema"
    );
    for (name, text) in [("flow", flow(100_000)), ("block", block(100))] {
        let err = value(&text, 0).expect_err(name);
        assert!(matches!(err, Issue::Syntax { .. }), "case: {name}: {err}");
    }
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n\
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let err = value(bomb, 0).expect_err("alias bomb stopped").to_string();
    assert!(err.contains("aliases copy more than 100000 nodes"), "{err}");
}

#[test]
fn syntax_errors_count_file_lines() {
    let err = value("a: 1\nb: [1\n", 10)
        .expect_err("unclosed")
        .to_string();
    assert!(err.starts_with("not valid YAML: "), "{err}");
    assert!(err.contains("line 12"), "{err}");
    let err = value("a: 1\n...\nb: 2\n", 0)
        .expect_err("two documents")
        .to_string();
    assert!(err.contains("second document"), "{err}");
    assert_eq!(value("# nothing\n", 0), Ok(Value::Null));
    assert_eq!(
        value("%YAML 1.1\n---\na: yes\n", 0),
        Ok(json!({"a": "yes"}))
    );
}
