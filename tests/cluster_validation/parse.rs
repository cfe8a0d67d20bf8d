//! Reading kubectl's error messages: the field paths the API server names.

/// The field paths in a kubectl error: `The X "n" is invalid: FIELD: ...`
/// (one error, or `* FIELD: ...` lines), `strict decoding error: unknown
/// field "FIELD"`, or the decoder's `Go struct field Type.FIELD of type`.
pub fn api_fields(text: &str) -> (Vec<String>, bool) {
    let mut fields = Vec::new();
    if let Some((_, rest)) = text.split_once(" is invalid: ") {
        let items: Vec<&str> = match rest.strip_prefix('\n') {
            Some(list) => list.lines().filter_map(|l| l.strip_prefix("* ")).collect(),
            None => vec![rest.lines().next().unwrap_or_default()],
        };
        for item in items {
            if let Some((field, _)) = item.split_once(": ") {
                fields.push(field.to_owned());
            }
        }
        return (fields, true);
    }
    if let Some((_, rest)) = text.split_once("strict decoding error: ") {
        for part in rest.lines().next().unwrap_or_default().split(", ") {
            if let Some(f) = part.strip_prefix("unknown field ") {
                fields.push(f.trim_matches('"').to_owned());
            }
        }
        return (fields, true);
    }
    if let Some((_, rest)) = text.split_once("Go struct field ") {
        if let Some((typed, _)) = rest.split_once(" of type") {
            if let Some((_, path)) = typed.split_once('.') {
                fields.push(path.to_owned());
            }
        }
        return (fields, false);
    }
    (fields, true)
}

/// `spec.ingress[0].ports[1].port` → `spec.ingress.ports.port`.
pub fn without_indexes(path: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for ch in path.chars() {
        match ch {
            '[' => skip = true,
            ']' => skip = false,
            _ if !skip => out.push(ch),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_fields_are_parsed() {
        // (case, kubectl output, fields, indexed)
        let cases = [
            (
                "one error",
                "The NetworkPolicy \"p\" is invalid: spec.ingress[0].ports[0].port: Invalid value: 0: must be",
                vec!["spec.ingress[0].ports[0].port"],
                true,
            ),
            (
                "a list",
                "The Pod \"p\" is invalid: \n* spec.a: Invalid value: \"x\": y\n* spec.b[1]: Required value\n",
                vec!["spec.a", "spec.b[1]"],
                true,
            ),
            (
                "strict decoding",
                "Error from server (BadRequest): error when creating \"f\": NetworkPolicy in version \"v1\" \
                 cannot be handled as a NetworkPolicy: strict decoding error: unknown field \"foo\", \
                 unknown field \"spec.ingres\"",
                vec!["foo", "spec.ingres"],
                true,
            ),
            (
                "decoder type error",
                "json: cannot unmarshal bool into Go struct field NetworkPolicyPort.spec.ingress.ports.port of type int32",
                vec!["spec.ingress.ports.port"],
                false,
            ),
            ("created", "networkpolicy.networking.k8s.io/p created (server dry run)", vec![], true),
        ];
        for (name, text, fields, indexed) in cases {
            let (got, got_indexed) = api_fields(text);
            assert_eq!(got, fields, "case: {name}");
            assert_eq!(got_indexed, indexed, "case: {name}");
        }
        assert_eq!(without_indexes("spec.a[0].b[12].c"), "spec.a.b.c");
    }
}
