//! Topic and consumer-group names, and the v2 namespaces they live in.
//!
//! A v2 `Resource` is a `(resource_namespace, name)` pair. The broker stores one string per
//! topic or group, as RocketMQ 5 does: the name alone in the empty namespace, `ns%name` in
//! namespace `ns`, and a dead-letter topic `%DLQ%group` or `%DLQ%ns%group`. Two rules make the
//! stored string name exactly one resource, so that a namespace never reaches another's topics
//! or groups and every answer can give the client its own pair back:
//!
//! - a namespace is 1-64 characters of `[a-zA-Z0-9_-]` (no `%`);
//! - a name is 1-127 characters of `[a-zA-Z0-9_|-]` (no `%`), except a dead-letter topic,
//!   which is `%DLQ%` and a group name.
//!
//! So the first `%` of a stored name (after the dead-letter prefix) ends its namespace, and
//! namespace `a`'s topic `b` (`a%b`) can be named by nobody else. RocketMQ lets the empty
//! namespace name `a%b` directly; here it cannot (a `%` in a plain name is refused), which is
//! what keeps namespaces apart.

use crate::v2 as pb;

/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Longest namespace.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Longest topic or group name, without its namespace.
pub const MAX_NAME_LEN: usize = 127;

/// Why a name or namespace is refused: a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a valid non-empty namespace.
pub fn namespace_ok(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= MAX_NAMESPACE_LEN
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for a valid plain topic or group name (no namespace, no `%`).
pub fn plain_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"|_-".contains(&b))
}

fn check_namespace(ns: &str) -> Result<(), NameError> {
    if ns.is_empty() || namespace_ok(ns) {
        Ok(())
    } else {
        Err(NameError(format!(
            "illegal namespace {ns:?}: use 1-{MAX_NAMESPACE_LEN} characters of [a-zA-Z0-9_-]"
        )))
    }
}

/// The stored name of topic `name` in namespace `ns` (empty: none), or why it is refused.
/// A dead-letter topic is named as the client knows it, `%DLQ%group`.
pub fn topic(ns: &str, name: &str) -> Result<String, NameError> {
    check_namespace(ns)?;
    if let Some(group) = name.strip_prefix(DLQ_PREFIX) {
        if plain_ok(group) {
            return Ok(dlq(ns, group));
        }
    } else if plain_ok(name) {
        return Ok(qualify(ns, name));
    }
    Err(NameError(format!(
        "illegal topic name {name:?}: use 1-{MAX_NAME_LEN} characters of [a-zA-Z0-9_|-], \
         or {DLQ_PREFIX} and a group name"
    )))
}

/// The stored name of consumer group `name` in namespace `ns` (empty: none), or why it is
/// refused.
pub fn group(ns: &str, name: &str) -> Result<String, NameError> {
    check_namespace(ns)?;
    if plain_ok(name) {
        return Ok(qualify(ns, name));
    }
    Err(NameError(format!(
        "illegal consumer group name {name:?}: use 1-{MAX_NAME_LEN} characters of [a-zA-Z0-9_|-]"
    )))
}

fn qualify(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}%{name}")
    }
}

fn dlq(ns: &str, group: &str) -> String {
    format!("{DLQ_PREFIX}{}", qualify(ns, group))
}

/// A stored name split back into `(namespace, name)`, the name as the namespace's clients
/// know it (a dead-letter topic keeps its prefix). The inverse of [`topic`] and [`group`].
pub fn split(stored: &str) -> (&str, String) {
    let (prefix, rest) = match stored.strip_prefix(DLQ_PREFIX) {
        Some(rest) => (DLQ_PREFIX, rest),
        None => ("", stored),
    };
    match rest.split_once('%') {
        Some((ns, name)) => (ns, format!("{prefix}{name}")),
        None => ("", stored.to_string()),
    }
}

/// The v2 resource a stored name stands for.
pub fn resource(stored: &str) -> pb::Resource {
    let (ns, name) = split(stored);
    pb::Resource {
        resource_namespace: ns.to_string(),
        name,
    }
}

/// A stored name as the admin service and CLI take it (`ns%name` for a namespaced one):
/// valid if it splits into a valid namespace and name that make it again.
pub fn stored_topic_ok(stored: &str) -> bool {
    let (ns, name) = split(stored);
    topic(ns, &name).is_ok_and(|s| s == stored)
}

/// As [`stored_topic_ok`], for a consumer group.
pub fn stored_group_ok(stored: &str) -> bool {
    let (ns, name) = split(stored);
    group(ns, &name).is_ok_and(|s| s == stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every valid pair survives the trip through its stored name, in either namespace, dead-
    /// letter topics included; two different pairs never share a stored name.
    #[test]
    fn stored_names_split_back_into_their_pair() {
        let pairs = [
            ("", "orders"),
            ("", "%DLQ%g"),
            ("ns", "orders"),
            ("ns", "%DLQ%g"),
            ("ns-2_x", "a|b"),
            ("orders", "ns"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (ns, name) in pairs {
            let stored = topic(ns, name).unwrap();
            assert_eq!(split(&stored), (ns, name.to_string()), "{stored}");
            assert!(stored_topic_ok(&stored), "{stored}");
            assert!(seen.insert(stored));
        }
        assert_eq!(topic("ns", "%DLQ%g").unwrap(), "%DLQ%ns%g");
        assert_eq!(group("ns", "g").unwrap(), "ns%g");
        assert_eq!(
            resource("ns%t"),
            pb::Resource {
                resource_namespace: "ns".into(),
                name: "t".into()
            }
        );
    }

    /// A `%` anywhere but the dead-letter prefix is refused, in names and namespaces, so
    /// nobody names another namespace's resources; so are empty and overlong names.
    #[test]
    fn names_that_could_cross_namespaces_are_refused() {
        for (ns, name) in [
            ("", "ns%orders"),
            ("", "%DLQ%ns%g"),
            ("a%b", "t"),
            ("ns", "x%y"),
            ("", ""),
            ("", "%RETRY%g"),
            ("sp ace", "t"),
        ] {
            assert!(topic(ns, name).is_err(), "{ns:?} {name:?}");
        }
        assert!(group("", "%DLQ%g").is_err());
        assert!(group("", &"g".repeat(MAX_NAME_LEN)).is_ok());
        assert!(group("", &"g".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(group(&"n".repeat(MAX_NAMESPACE_LEN + 1), "g").is_err());
        // The admin's form: the stored name.
        assert!(stored_topic_ok("ns%orders") && stored_topic_ok("%DLQ%ns%g"));
        assert!(!stored_topic_ok("a%b%c") && !stored_group_ok("%DLQ%g"));
    }
}
