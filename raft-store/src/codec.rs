//! The one bincode configuration raft-store decodes with: the standard encoding plus a byte
//! limit, so every length read from a peer or a file is checked before anything is allocated.
//! Without it ten bytes claiming a 1 PiB vector aborted the whole process (issue 10's probe).
//! Encoding is unchanged (a limit only affects what a decoder accepts).

use serde::de::DeserializeOwned;

/// The most bytes one decoded value may claim: a log frame's largest payload
/// (`log::frame::MAX_FRAME_PAYLOAD` is defined from it).
pub const LIMIT: usize = 256 << 20;

/// The configuration: standard, with [`LIMIT`].
pub fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Decodes one value with [`config`]; trailing bytes are allowed (callers frame their input).
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(b, config())
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forged_length_is_an_error_not_an_allocation() {
        // A varint length of 2^50 in front of nothing: must fail fast.
        let probe = [0xFDu8, 0, 0, 0, 0, 0, 0, 4, 0];
        assert!(super::decode::<Vec<u8>>(&probe).is_err());
        assert!(super::decode::<String>(&probe).is_err());
        assert!(super::decode::<Vec<Vec<u64>>>(&probe).is_err());
    }
}
