//! Message filters a receive or pull applies: tags ([`crate::command::TagFilter`], carried in
//! the log's receive commands) and SQL92 expressions over message properties ([`sql92`]),
//! judged on the leader ([`judge`]).

pub mod judge;
pub mod sql92;

use std::cell::OnceCell;

use crate::command::TagFilter;
use crate::model::StoredMessage;

/// What a subscription's filter expression asks for: tags, or a SQL92 expression (checked;
/// judged on the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The tag filter ([`TagFilter::All`] with SQL92).
    pub tags: TagFilter,
    /// The SQL92 expression, if the filter is one.
    pub sql: Option<String>,
}

impl Wanted {
    /// Every message.
    pub const ALL: Wanted = Wanted {
        tags: TagFilter::All,
        sql: None,
    };
}

/// A stored message's properties as a SQL92 expression sees them: its user properties, and
/// the pseudo-properties `TAGS` (its tag) and `KEYS` (its keys, space-separated), which
/// take precedence over user properties of the same name (RocketMQ reserves them).
pub struct MessageProperties<'a> {
    m: &'a StoredMessage,
    keys: OnceCell<String>,
}

impl<'a> MessageProperties<'a> {
    /// The properties of `m`.
    pub fn new(m: &'a StoredMessage) -> Self {
        Self {
            m,
            keys: OnceCell::new(),
        }
    }
}

impl sql92::Properties for MessageProperties<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "TAGS" => self.m.tag.as_deref(),
            "KEYS" if self.m.keys.is_empty() => None,
            "KEYS" => Some(self.keys.get_or_init(|| self.m.keys.join(" "))),
            _ => self.m.properties.get(name).map(String::as_str),
        }
    }
}
