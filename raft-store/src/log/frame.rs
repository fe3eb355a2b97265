//! The on-disk encoding of log entries and segment headers (pure, no I/O).
//!
//! A segment file starts with a 32-byte header: magic `RMQSEG01`, the base index (u64 LE),
//! 8 reserved bytes, and a CRC32C of the first 24 bytes. Then frames follow back to back:
//!
//! ```text
//! magic u32 | crc32c u32 | index u64 | term u64 | len u32 | payload[len]
//! ```
//!
//! The CRC covers index, term, len and payload, so a frame is valid only if all of it landed.
//! The payload's first byte is its kind: 0 blank, 1 normal (the rest is the request bytes,
//! stored as-is), 2 membership (bincode).

use crate::types::Entry;
use crate::types::EntryPayload;
use crate::types::Request;
use crate::types::log_id;

/// Segment header length in bytes.
pub const SEGMENT_HEADER_LEN: u64 = 32;
const SEGMENT_MAGIC: &[u8; 8] = b"RMQSEG01";

/// Frame header length in bytes.
pub const FRAME_HEADER_LEN: usize = 28;
/// Frame magic: "RMQF" little-endian.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"RMQF");
/// Frames larger than this are rejected as garbage (a real entry is bounded by the
/// proposal size limit, far below this).
pub const MAX_FRAME_PAYLOAD: u32 = crate::codec::LIMIT as u32;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a segment header for `base`.
pub fn segment_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header, returning its base index.
pub fn parse_segment_header(h: &[u8]) -> Result<u64, String> {
    if h.len() < SEGMENT_HEADER_LEN as usize {
        return Err(format!("segment header too short ({} bytes)", h.len()));
    }
    if &h[..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().unwrap());
    if crc != crc32c::crc32c(&h[..24]) {
        return Err("segment header CRC mismatch".into());
    }
    Ok(u64::from_le_bytes(h[8..16].try_into().unwrap()))
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Stored CRC32C.
    pub crc: u32,
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Payload length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// Total frame length (header plus payload).
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + self.len as u64
    }
}

/// Parses a frame header; `None` if the magic or length is not plausible.
pub fn parse_frame_header(b: &[u8]) -> Option<FrameHeader> {
    if b.len() < FRAME_HEADER_LEN {
        return None;
    }
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    if magic != FRAME_MAGIC {
        return None;
    }
    let h = FrameHeader {
        crc: u32::from_le_bytes(b[4..8].try_into().unwrap()),
        index: u64::from_le_bytes(b[8..16].try_into().unwrap()),
        term: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        len: u32::from_le_bytes(b[24..28].try_into().unwrap()),
    };
    (h.len <= MAX_FRAME_PAYLOAD).then_some(h)
}

/// True if `frame` (header plus payload, exactly) carries a matching CRC.
pub fn frame_crc_ok(h: &FrameHeader, frame: &[u8]) -> bool {
    frame.len() as u64 == h.frame_len() && crc32c::crc32c(&frame[8..]) == h.crc
}

/// Appends the frame for `entry` to `out`.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // CRC, filled below
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // length, filled below
    let payload_start = out.len();
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(req) => {
            out.push(KIND_NORMAL);
            out.extend_from_slice(&req.0);
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            let bytes =
                bincode::serde::encode_to_vec(m, bincode_config()).expect("membership encodes");
            out.extend_from_slice(&bytes);
        }
    }
    let len = (out.len() - payload_start) as u32;
    assert!(
        len <= MAX_FRAME_PAYLOAD,
        "log entry of {len} bytes exceeds the frame limit"
    );
    out[start + 24..start + 28].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a whole, CRC-checked frame into an entry.
pub fn decode_entry(h: &FrameHeader, frame: &[u8]) -> Result<Entry, String> {
    let payload = &frame[FRAME_HEADER_LEN..];
    let (&kind, rest) = payload.split_first().ok_or("empty payload")?;
    let payload = match kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(Request(rest.to_vec())),
        KIND_MEMBERSHIP => {
            let (m, _) = bincode::serde::decode_from_slice(rest, crate::codec::config())
                .map_err(|e| format!("membership payload does not decode: {e}"))?;
            EntryPayload::Membership(m)
        }
        other => return Err(format!("unknown payload kind {other}")),
    };
    Ok(Entry {
        log_id: log_id(h.term, h.index),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::types::Membership;
    use crate::types::Node;

    fn entries() -> Vec<Entry> {
        let mut nodes: BTreeMap<u64, Node> = BTreeMap::new();
        nodes.insert(1, Node::new("10.0.0.1:5000"));
        nodes.insert(2, Node::new("10.0.0.2:5000"));
        let m = Membership::new(vec![[1u64, 2].into_iter().collect()], nodes).unwrap();
        vec![
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Normal(Request(b"hello".to_vec())),
            },
            Entry {
                log_id: log_id(2, 3),
                payload: EntryPayload::Membership(m),
            },
        ]
    }

    #[test]
    fn round_trip() {
        for e in entries() {
            let mut buf = Vec::new();
            encode_entry(&e, &mut buf);
            let h = parse_frame_header(&buf).unwrap();
            assert_eq!(h.frame_len() as usize, buf.len());
            assert!(frame_crc_ok(&h, &buf));
            assert_eq!(decode_entry(&h, &buf).unwrap(), e);
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let e = &entries()[1];
        let mut buf = Vec::new();
        encode_entry(e, &mut buf);
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            let ok = parse_frame_header(&b)
                .is_some_and(|h| h.frame_len() as usize == b.len() && frame_crc_ok(&h, &b));
            assert!(!ok, "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        let h = segment_header(42);
        assert_eq!(parse_segment_header(&h), Ok(42));
        let mut bad = h;
        bad[9] ^= 1;
        assert!(parse_segment_header(&bad).is_err());
    }
}
