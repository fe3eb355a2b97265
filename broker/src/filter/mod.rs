//! Message filters a receive or pull applies: tags ([`crate::command::TagFilter`], carried in
//! the log's receive commands) and SQL92 expressions over message properties ([`sql92`]).

pub mod sql92;
