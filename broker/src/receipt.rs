//! Receipt handles: the opaque strings clients use to ack or change a delivery.
//!
//! A handle names the Raft group, queue, queue offset and delivery sequence, with a CRC so that
//! garbage is recognised as such: `hex(version u8 | group u64 | queue u32 | offset u64 |
//! seq u64 | crc32c u32)`. Its validity is decided by the replicated receive state, so a handle
//! issued by one leader works on the next.

use crate::command::Receipt;
use crate::model::QueueId;
use crate::model::QueueOffset;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 4 + 8 + 8 + 4;

/// Encodes a receipt of Raft group `group`.
pub fn encode(group: u64, r: &Receipt) -> String {
    let mut b = Vec::with_capacity(LEN);
    b.push(VERSION);
    b.extend_from_slice(&group.to_le_bytes());
    b.extend_from_slice(&r.queue.0.to_le_bytes());
    b.extend_from_slice(&r.offset.0.to_le_bytes());
    b.extend_from_slice(&r.seq.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes a handle into (Raft group, receipt), or says why it is not one.
pub fn decode(s: &str) -> Result<(u64, Receipt), &'static str> {
    if s.len() != LEN * 2 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("malformed receipt handle");
    }
    let b: Vec<u8> = (0..LEN)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex checked"))
        .collect();
    if b[0] != VERSION {
        return Err("unknown receipt handle version");
    }
    let crc = u32::from_le_bytes(b[LEN - 4..].try_into().unwrap());
    if crc32c::crc32c(&b[..LEN - 4]) != crc {
        return Err("damaged receipt handle");
    }
    let group = u64::from_le_bytes(b[1..9].try_into().unwrap());
    Ok((
        group,
        Receipt {
            queue: QueueId(u32::from_le_bytes(b[9..13].try_into().unwrap())),
            offset: QueueOffset(u64::from_le_bytes(b[13..21].try_into().unwrap())),
            seq: u64::from_le_bytes(b[21..29].try_into().unwrap()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let r = Receipt {
            queue: QueueId(3),
            offset: QueueOffset(123_456),
            seq: 99,
        };
        let s = encode(7, &r);
        assert_eq!(decode(&s), Ok((7, r)));
        assert!(decode("").is_err());
        assert!(decode("not a handle").is_err());
        let mut bad = s.clone().into_bytes();
        bad[20] = if bad[20] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            decode(std::str::from_utf8(&bad).unwrap()),
            Err("damaged receipt handle")
        );
    }
}
