//! Scalars by the YAML 1.2 core schema: what a plain scalar is (null,
//! boolean, integer, float or string), and what a tagged or quoted one is.
//! Pure functions of the scalar's text, style and tag.

use serde_json::{Number, Value};
use serde_saphyr::granit_parser::{ScalarStyle, Tag};

/// What a plain scalar is, by the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Plain {
    /// `null`, `Null`, `NULL`, `~`, or nothing.
    Null,
    /// `true`, `True`, `TRUE`, `false`, `False`, `FALSE`.
    Bool(bool),
    /// An integer (decimal, `0o` octal, `0x` hex) or a finite float.
    Number(Number),
    /// `.inf`, `-.inf`, `.nan` and friends, or a float beyond `f64`: YAML
    /// numbers that JSON cannot hold.
    NotFinite,
    /// Anything else.
    Str,
}

/// Resolves a plain scalar by the YAML 1.2 core schema. A decimal integer
/// with a leading zero (`0777`) is the decimal number (777), as the schema
/// says; YAML 1.1 read it as octal. Where a string is expected, either is a
/// type error: quote it.
pub(super) fn resolve(t: &str) -> Plain {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits(unsigned) {
        return number(int(t));
    }
    for (prefix, radix) in [("0o", 8), ("0x", 16)] {
        if let Some(d) = t.strip_prefix(prefix) {
            if !d.is_empty() && d.chars().all(|c| c.is_digit(radix)) {
                return number(radix_int(d, radix));
            }
        }
    }
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(t, ".nan" | ".NaN" | ".NAN") {
        return Plain::NotFinite;
    }
    if float(t) {
        return number(t.parse::<f64>().ok().and_then(Number::from_f64));
    }
    Plain::Str
}

/// A number, or [`Plain::NotFinite`] when `f64` cannot hold it.
fn number(n: Option<Number>) -> Plain {
    n.map_or(Plain::NotFinite, Plain::Number)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal integer; beyond 64 bits, the nearest float.
fn int(t: &str) -> Option<Number> {
    let exact = match t.strip_prefix('-') {
        Some(_) => t.parse::<i64>().ok().map(Number::from),
        None => t
            .trim_start_matches('+')
            .parse::<u64>()
            .ok()
            .map(Number::from),
    };
    exact.or_else(|| t.parse::<f64>().ok().and_then(Number::from_f64))
}

/// An octal or hex integer; beyond 64 bits, the nearest float.
fn radix_int(d: &str, radix: u32) -> Option<Number> {
    match u64::from_str_radix(d, radix) {
        Ok(n) => Some(Number::from(n)),
        Err(_) => {
            let f = d.chars().fold(0f64, |acc, c| {
                acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
            });
            Number::from_f64(f)
        }
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn float(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (t, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// A scalar's value: plain and untagged ones by [`resolve`], the others by
/// their tag or as strings.
pub(super) fn scalar_value(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Value, String> {
    let non_specific = tag.is_some_and(|t| t.handle().is_empty() && t.suffix() == "!");
    let core = tag.and_then(Tag::core_suffix);
    let resolved = || match resolve(text) {
        Plain::Null => Ok(Value::Null),
        Plain::Bool(b) => Ok(Value::Bool(b)),
        Plain::Number(n) => Ok(Value::Number(n)),
        Plain::Str => Ok(Value::String(text.to_owned())),
        Plain::NotFinite => Err(format!("{text} is a number that JSON cannot hold")),
    };
    let wrong = |ty: &str| Err(format!("{text:?} is not {ty}"));
    match (core, &resolve(text)) {
        (Some("str"), _) => Ok(Value::String(text.to_owned())),
        (Some("null"), Plain::Null) | (Some("bool"), Plain::Bool(_)) => resolved(),
        (Some("null"), _) => wrong("null"),
        (Some("bool"), _) => wrong("a boolean"),
        (Some("int"), _) if digits(text.strip_prefix(['-', '+']).unwrap_or(text)) => int(text)
            .map(Value::Number)
            .ok_or_else(|| format!("{text} is too large")),
        (Some("int"), Plain::Number(n)) if !n.is_f64() => Ok(Value::Number(n.clone())),
        (Some("int"), _) => wrong("an integer"),
        (Some("float"), Plain::Number(n)) => {
            let f = if float(text) {
                text.parse().ok()
            } else {
                n.as_f64()
            };
            Ok(Value::Number(
                f.and_then(Number::from_f64).unwrap_or(n.clone()),
            ))
        }
        (Some("float"), Plain::NotFinite) => resolved(),
        (Some("float"), Plain::Str) if float(text) => {
            let f = text.parse().ok().and_then(Number::from_f64);
            f.map(Value::Number)
                .ok_or_else(|| format!("{text} is too large"))
        }
        (Some("float"), _) => wrong("a number"),
        _ if non_specific || style != ScalarStyle::Plain => Ok(Value::String(text.to_owned())),
        _ => resolved(),
    }
}
