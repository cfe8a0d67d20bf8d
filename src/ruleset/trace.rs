//! Evaluates a packet against a `Ruleset`, as the kernel would walk it.
