//! Reads that run on a group's leader after a ReadIndex round, so they never miss an
//! acknowledged send or commit: pulls (offset-based consumption, with a long poll) and offset
//! queries. A follower forwards them ([`crate::forward`]); this is what the leader runs.

use std::time::Duration;

use crate::command::TagFilter;
use crate::error::BrokerError;
use crate::error::Result;
use crate::filter::MessageProperties;
use crate::filter::sql92::Sql92;
use crate::forward::wire::OffsetAt;
use crate::forward::wire::Read;
use crate::forward::wire::ReadAnswer;
use crate::limits::MAX_SQL_JUDGED;
use crate::replica::Replica;
use crate::state::Reject;

/// Entries examined per pull when a filter skips most of them (bounds the work of one call).
pub const MAX_PULL_SCAN: u64 = 64 * 1024;

/// Runs `read` on `replica`, which must lead its group.
pub async fn run(replica: &Replica, read: Read) -> Result<ReadAnswer> {
    match read {
        Read::Pull {
            topic,
            queue,
            offset,
            batch,
            filter,
            wait_ms,
            max_bytes,
        } => {
            let q = PullQuery {
                topic,
                queue,
                offset,
                batch,
                filter,
                sql: None,
                wait_ms,
                max_bytes,
            };
            pull(replica, q).await
        }
        Read::PullSql {
            topic,
            queue,
            offset,
            batch,
            sql,
            wait_ms,
            max_bytes,
        } => {
            let sql = Sql92::parse(&sql).map_err(|e| {
                BrokerError::Rejected(Reject::Invalid(format!("SQL92 filter: {e}")))
            })?;
            let q = PullQuery {
                topic,
                queue,
                offset,
                batch,
                filter: TagFilter::All,
                sql: Some(sql),
                wait_ms,
                max_bytes,
            };
            pull(replica, q).await
        }
        Read::QueryOffset { topic, queue, at } => {
            let o = replica
                .read_linearizable(|s| {
                    let cq = s.queue(&topic, queue);
                    let o = match at {
                        OffsetAt::Beginning => cq.map_or(0, |c| c.start()),
                        OffsetAt::End => cq.map_or(0, |c| c.end()),
                        OffsetAt::Time(ms) => cq.map_or(0, |c| c.offset_at_time(ms)),
                    };
                    match s.storage_error() {
                        Some(e) => Err(BrokerError::Corrupt(e)),
                        None => Ok(o),
                    }
                })
                .await??;
            Ok(ReadAnswer::Offset(Some(o)))
        }
        Read::GetOffset {
            group,
            topic,
            queue,
        } => Ok(ReadAnswer::Offset(
            replica
                .read_linearizable(|s| s.offsets.get(&group, &topic, queue))
                .await?,
        )),
    }
}

/// A pull as the leader runs it.
struct PullQuery {
    topic: String,
    queue: u32,
    offset: u64,
    batch: u32,
    filter: TagFilter,
    /// A SQL92 filter: the pull reads up to [`MAX_SQL_JUDGED`] messages to judge them.
    sql: Option<Sql92>,
    wait_ms: u64,
    max_bytes: u64,
}

/// Runs a pull (with its long poll) on `replica`, which must lead its group.
async fn pull(replica: &Replica, q: PullQuery) -> Result<ReadAnswer> {
    let PullQuery {
        topic,
        queue,
        offset,
        batch,
        filter,
        sql,
        wait_ms,
        max_bytes,
    } = q;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        let notify = replica.changed().clone();
        let mut changed = Box::pin(notify.notified());
        changed.as_mut().enable();
        let found = replica
            .read_linearizable(|s| {
                // A queue that could not be read answers nothing, not a position.
                if let Some(e) = s.storage_error() {
                    return Ok(Err(BrokerError::Corrupt(e)));
                }
                let Some(cq) = s.queue(&topic, queue) else {
                    return Ok(Ok((0, Vec::new(), offset)));
                };
                let end = cq.end();
                if offset > end {
                    return Err(ReadAnswer::PastEnd { end });
                }
                if offset < cq.start() {
                    return Err(ReadAnswer::BeforeStart { start: cq.start() });
                }
                let mut found = Vec::new();
                let mut next = offset;
                let mut bytes = 0u64;
                // A SQL92 pull takes candidates to judge, the reply's bounds come after.
                let want = match sql {
                    Some(_) => MAX_SQL_JUDGED as usize,
                    None => batch as usize,
                };
                while next < end && found.len() < want && next - offset < MAX_PULL_SCAN {
                    // A dead letter whose message retention deleted is skipped.
                    if let Some(e) = cq.get(next)
                        && filter.matches(e.tag_hash)
                        && e.log_index >= s.log_start
                    {
                        // The reply stays under max_bytes (at least one message).
                        bytes += u64::from(e.len);
                        if sql.is_none() && !found.is_empty() && bytes > max_bytes {
                            break;
                        }
                        found.push((next, e));
                    }
                    next += 1;
                }
                // An entry that could not be read is not skipped: the request fails
                // (and the replica stops at its next apply).
                if let Some(e) = s.storage_error() {
                    return Ok(Err(BrokerError::Corrupt(e)));
                }
                Ok(Ok((end, found, next)))
            })
            .await?;
        let found = match found {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };
        let (end, found, mut next) = found?;
        let now = tokio::time::Instant::now();
        if !found.is_empty() || next > offset || now >= deadline {
            let mut messages = Vec::with_capacity(found.len().min(batch as usize));
            let mut bytes = 0u64;
            for (off, e) in found {
                // A SQL92 pull stops once the reply is full: the consumer goes on from the
                // first message it did not judge.
                if sql.is_some() {
                    bytes += u64::from(e.len);
                    if messages.len() >= batch as usize
                        || (!messages.is_empty() && bytes > max_bytes)
                    {
                        next = off;
                        break;
                    }
                }
                match replica.read_message(&e) {
                    Ok(m)
                        if sql
                            .as_ref()
                            .is_some_and(|f| !f.matches(&MessageProperties::new(&m))) =>
                    {
                        bytes -= u64::from(e.len);
                    }
                    Ok(m) => messages.push((off, e, m)),
                    // Retention deleted it since the queue was read: the consumer
                    // moves on to the new start, as for any deleted offset.
                    Err(_) if replica.read(|s| e.log_index < s.log_start) => {
                        let start =
                            replica.read(|s| s.queue(&topic, queue).map_or(0, |c| c.start()));
                        return Ok(ReadAnswer::BeforeStart { start });
                    }
                    Err(err) => return Err(err),
                }
            }
            return Ok(ReadAnswer::Pulled {
                end,
                next,
                messages,
            });
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(deadline - now) => {}
        }
    }
}
