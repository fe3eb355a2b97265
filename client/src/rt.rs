//! The runtime shim: the client's only source of randomness and wall-clock time, so that the
//! same code is deterministic under the madsim simulator (seeded from the simulation) and
//! uses the OS outside it.

use std::time::SystemTime;
use std::time::UNIX_EPOCH;

/// One random `u64`.
pub(crate) fn random_u64() -> u64 {
    #[cfg(madsim)]
    {
        ::madsim::rand::random::<u64>()
    }
    #[cfg(not(madsim))]
    {
        use rand::RngExt;
        rand::rng().random::<u64>()
    }
}

/// Milliseconds since the Unix epoch (virtual under madsim, which intercepts the clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
