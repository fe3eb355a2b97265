//! Reads that run on a group's leader after a ReadIndex round, so they never miss an
//! acknowledged send or commit: pulls (offset-based consumption, with a long poll) and offset
//! queries. A follower forwards them ([`crate::forward`]); this is what the leader runs.

use std::time::Duration;

use crate::error::BrokerError;
use crate::error::Result;
use crate::forward::wire::OffsetAt;
use crate::forward::wire::Read;
use crate::forward::wire::ReadAnswer;
use crate::replica::Replica;

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
                        while next < end
                            && found.len() < batch as usize
                            && next - offset < MAX_PULL_SCAN
                        {
                            // A dead letter whose message retention deleted is skipped.
                            if let Some(e) = cq.get(next)
                                && filter.matches(e.tag_hash)
                                && e.log_index >= s.log_start
                            {
                                // The reply stays under max_bytes (at least one message).
                                bytes += u64::from(e.len);
                                if !found.is_empty() && bytes > max_bytes {
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
                let (end, found, next) = found?;
                let now = tokio::time::Instant::now();
                if !found.is_empty() || next > offset || now >= deadline {
                    let mut messages = Vec::with_capacity(found.len());
                    for (off, e) in found {
                        match replica.read_message(&e) {
                            Ok(m) => messages.push((off, e, m)),
                            // Retention deleted it since the queue was read: the consumer
                            // moves on to the new start, as for any deleted offset.
                            Err(_) if replica.read(|s| e.log_index < s.log_start) => {
                                let start = replica
                                    .read(|s| s.queue(&topic, queue).map_or(0, |c| c.start()));
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
