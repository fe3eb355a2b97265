//! The summary of a sealed segment, kept beside it as `<base>.sum`, so that opening a log
//! does not CRC-scan every sealed segment (issue 12: a restart took time proportional to the
//! whole log; now it follows the active segment, which is the only one that can hold a torn
//! tail).
//!
//! A summary records what a scan would have found: the end of valid data, the last entry's
//! log id and frame position, and the sparse index. It is written right after the segment is
//! sealed and fsynced, and is itself not fsynced: a summary lost or torn by a crash fails its
//! CRC and the segment is scanned as before (and summarised again). A summary can also go
//! stale when a truncation cuts back into its segment and new entries follow; it is trusted
//! only if the segment's last frame is the one it names (same position, index and term, a
//! valid CRC, ending at the file's end). Two entries with the same index and term are the
//! same entry (Raft's log matching), written by the same deterministic encoding, so such a
//! segment holds exactly the frames the summary describes.
//!
//! What this gives up: damage in the middle of a sealed segment is found when that entry is
//! read (every read checks the frame's CRC, and a bad frame stops the replica) instead of at
//! start-up. Kafka (recovery point) and RocketMQ (checkpoint) make the same trade. The
//! `verify_sealed_on_open` setting restores the full scan.
//!
//! Layout (little-endian): magic `RMQSUM01`, base, end, last index, last term, last frame
//! position, sparse point count, then (index, position) pairs, then a CRC32C of all of it.

use super::frame::SEGMENT_HEADER_LEN;

const MAGIC: &[u8; 8] = b"RMQSUM01";
/// Fixed part: magic plus six u64 fields.
const FIXED_LEN: usize = 8 + 6 * 8;

/// What a scan of a sealed segment found; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub base: u64,
    /// End of valid data (the file's length once sealed).
    pub end: u64,
    /// The last entry's index and term.
    pub last: (u64, u64),
    /// Where the last entry's frame starts.
    pub last_pos: u64,
    /// The sparse index: (index, byte offset), ascending.
    pub sparse: Vec<(u64, u64)>,
}

/// The file name of the summary of the segment starting at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.sum")
}

/// The base index encoded in a summary file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    super::segment::parse_base(name, ".sum")
}

impl Summary {
    /// The summary's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 16 * self.sparse.len() + 4);
        out.extend_from_slice(MAGIC);
        for v in [
            self.base,
            self.end,
            self.last.0,
            self.last.1,
            self.last_pos,
            self.sparse.len() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (index, pos) in &self.sparse {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&pos.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a summary of the segment at `base`; the error says why it is not
    /// usable (the caller then scans the segment).
    pub fn decode(bytes: &[u8], base: u64) -> Result<Summary, String> {
        if bytes.len() < FIXED_LEN + 4 {
            return Err(format!("{} bytes, too short", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err("CRC mismatch".into());
        }
        if &body[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let word = |i: usize| u64::from_le_bytes(body[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let count = word(5);
        if (body.len() - FIXED_LEN) as u64 != count.saturating_mul(16) {
            return Err(format!("{count} sparse points do not fit its length"));
        }
        let sparse: Vec<(u64, u64)> = body[FIXED_LEN..]
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    u64::from_le_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect();
        let s = Summary {
            base: word(0),
            end: word(1),
            last: (word(2), word(3)),
            last_pos: word(4),
            sparse,
        };
        if s.base != base {
            return Err(format!("says base {}, file name says {base}", s.base));
        }
        // Plausibility, so a well-formed but wrong summary cannot make reads seek outside the
        // segment: points ascend, lie between the header and the last frame, and start with
        // the first entry.
        let ascending = s
            .sparse
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let inside = s.sparse.iter().all(|&(i, p)| {
            i >= s.base && i <= s.last.0 && p >= SEGMENT_HEADER_LEN && p <= s.last_pos
        });
        let first_ok = s.sparse.first() == Some(&(s.base, SEGMENT_HEADER_LEN));
        if s.last.0 < s.base
            || s.last_pos < SEGMENT_HEADER_LEN
            || s.last_pos >= s.end
            || !ascending
            || !inside
            || !first_ok
        {
            return Err("implausible contents".into());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            base: 100,
            end: 9000,
            last: (140, 3),
            last_pos: 8700,
            sparse: vec![(100, 32), (120, 4100), (139, 8400)],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(Summary::decode(&s.encode(), 100), Ok(s));
        assert_eq!(parse_name(&file_name(100)), Some(100));
        assert_eq!(parse_name("00000000000000000100.seg"), None);
    }

    #[test]
    fn damage_and_nonsense_are_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Summary::decode(&b, 100).is_err(), "flip at {i} accepted");
        }
        assert!(Summary::decode(&bytes[..bytes.len() - 1], 100).is_err());
        assert!(Summary::decode(&[], 100).is_err());
        assert!(
            Summary::decode(&bytes, 101).is_err(),
            "another segment's summary"
        );
        let mut s = sample();
        s.sparse[1].1 = 9500; // past the last frame
        assert!(Summary::decode(&s.encode(), 100).is_err());
        let mut s = sample();
        s.sparse.swap(0, 1);
        assert!(Summary::decode(&s.encode(), 100).is_err());
    }
}
