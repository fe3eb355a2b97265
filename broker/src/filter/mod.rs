//! Message filters a receive or pull applies: tags ([`crate::command::TagFilter`], carried in
//! the log's receive commands) and SQL92 expressions over message properties ([`sql92`]),
//! judged on the leader ([`judge`]).

pub mod judge;
pub mod sql92;

use std::cell::OnceCell;

use crate::command::TagFilter;
use crate::model::MessageHead;
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
    m: Source<'a>,
    keys: OnceCell<String>,
}

/// Where the properties are read from.
enum Source<'a> {
    Message(&'a StoredMessage),
    Head(&'a MessageHead<'a>),
}

impl<'a> MessageProperties<'a> {
    /// The properties of `m`.
    pub fn new(m: &'a StoredMessage) -> Self {
        Self {
            m: Source::Message(m),
            keys: OnceCell::new(),
        }
    }

    /// The properties of a message's head (as the leader judges it, without the body).
    pub fn of_head(h: &'a MessageHead<'a>) -> Self {
        Self {
            m: Source::Head(h),
            keys: OnceCell::new(),
        }
    }

    fn keys(&self) -> Option<&str> {
        let joined = || match self.m {
            Source::Message(m) => m.keys.join(" "),
            Source::Head(h) => h.keys.join(" "),
        };
        let empty = match self.m {
            Source::Message(m) => m.keys.is_empty(),
            Source::Head(h) => h.keys.is_empty(),
        };
        (!empty).then(|| self.keys.get_or_init(joined).as_str())
    }
}

impl sql92::Properties for MessageProperties<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match (name, &self.m) {
            ("TAGS", Source::Message(m)) => m.tag.as_deref(),
            ("TAGS", Source::Head(h)) => h.tag,
            ("KEYS", _) => self.keys(),
            (_, Source::Message(m)) => m.properties.get(name).map(String::as_str),
            (_, Source::Head(h)) => h.properties.get(name).copied(),
        }
    }
}
