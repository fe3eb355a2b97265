//! The runtime shim: the one place in RaftMQ's library crates that knows whether it runs on
//! real tokio or inside the madsim simulator.
//!
//! [`Rt`] is the `AsyncRuntime` openraft is built with: openraft's own tokio runtime normally,
//! [`madsim::MadsimRuntime`] under `--cfg madsim`. The helpers below (`spawn_blocking`, `rng`)
//! are what the rest of the code uses instead of `std::thread` or a process-seeded RNG, so the
//! simulator stays deterministic. Everything else (`tokio::spawn`, `tokio::time`, tonic) is
//! swapped by renaming the `madsim-tokio`/`madsim-tonic` packages, without any `cfg`.

#[cfg(madsim)]
mod det_watch;
#[cfg(madsim)]
mod madsim;

#[cfg(madsim)]
pub use self::madsim::MadsimRuntime as Rt;
#[cfg(not(madsim))]
pub use openraft_rt_tokio::TokioRuntime as Rt;

use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Runs a blocking closure (an `fsync`, a large file read) off the async worker threads.
///
/// In the simulator there are no OS threads: the closure runs inline, which is what a
/// simulated disk wants anyway (its latency is modelled with virtual sleeps).
pub async fn spawn_blocking<F, T>(f: F) -> std::io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(madsim)]
    {
        Ok(f())
    }
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| std::io::Error::other(format!("blocking task failed: {e}")))
    }
}

/// A fresh pseudo-random generator: seeded from the simulation's seed under madsim, from the
/// OS otherwise. Use it for anything random that affects behaviour (jitter, fault injection).
pub fn rng() -> SmallRng {
    SmallRng::seed_from_u64(random_u64())
}

/// One random `u64` from the runtime's source of randomness (see [`rng`]).
pub fn random_u64() -> u64 {
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

/// FoundationDB-style fault injection: `buggify!()` is `false` outside the simulator. Inside it,
/// when the running scenario has switched buggify on ([`set_buggify`]), each call site is
/// enabled for the whole run with probability 1/4 (decided from the seed and the site, so
/// replays agree) and, when enabled, fires on a call with probability 1/4.
#[macro_export]
macro_rules! buggify {
    () => {{
        #[cfg(madsim)]
        {
            $crate::rt::buggify_site(concat!(file!(), ":", line!()))
        }
        #[cfg(not(madsim))]
        {
            false
        }
    }};
}

#[cfg(madsim)]
thread_local! {
    static BUGGIFY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Switches buggify on or off for the simulation running on this thread.
#[cfg(madsim)]
pub fn set_buggify(on: bool) {
    BUGGIFY.with(|b| b.set(on));
}

/// See [`buggify!`].
#[cfg(madsim)]
pub fn buggify_site(site: &'static str) -> bool {
    if !BUGGIFY.with(|b| b.get()) {
        return false;
    }
    use std::hash::Hash;
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (site, ::madsim::runtime::Handle::current().seed()).hash(&mut h);
    h.finish().is_multiple_of(4) && ::madsim::rand::random::<u64>().is_multiple_of(4)
}

/// Milliseconds since the Unix epoch by this node's wall clock. Under the simulator the time is
/// virtual and the scenario may skew it per node ([`set_node_clock`]): an offset, a rate error,
/// and steps, as NTP corrections and bad oscillators produce.
pub fn wall_ms() -> u64 {
    wall_ns() / 1_000_000
}

/// [`wall_ms`] in nanoseconds, for clocks that must not lose sub-millisecond fractions.
pub fn wall_ns() -> u64 {
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    #[cfg(madsim)]
    {
        let skew = node_clock();
        let drift_ns =
            (skew.drift_ppm as i128 * skew.since.elapsed().as_nanos() as i128 / 1_000_000) as i64;
        base.saturating_add_signed(skew.offset_ms * 1_000_000 + drift_ns)
    }
    #[cfg(not(madsim))]
    {
        base
    }
}

/// How long since `since` by this node's monotonic clock. Under the simulator the scenario may
/// make a node's monotonic clock run fast or slow ([`set_node_clock`]); timers are not affected.
pub fn elapsed_since(since: tokio::time::Instant) -> std::time::Duration {
    let d = since.elapsed();
    #[cfg(madsim)]
    {
        let ppm = node_clock().drift_ppm as i128;
        let ns = d.as_nanos() as i128;
        std::time::Duration::from_nanos((ns + ns * ppm / 1_000_000).max(0) as u64)
    }
    #[cfg(not(madsim))]
    {
        d
    }
}

/// One simulated node's clock error.
#[cfg(madsim)]
#[derive(Debug, Clone, Copy)]
struct NodeClock {
    offset_ms: i64,
    drift_ppm: i64,
    since: tokio::time::Instant,
}

#[cfg(madsim)]
thread_local! {
    static CLOCKS: std::cell::RefCell<std::collections::BTreeMap<::madsim::task::NodeId, NodeClock>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

#[cfg(madsim)]
fn node_clock() -> NodeClock {
    let node = ::madsim::plugin::node();
    CLOCKS
        .with(|c| c.borrow().get(&node).copied())
        .unwrap_or(NodeClock {
            offset_ms: 0,
            drift_ppm: 0,
            since: tokio::time::Instant::now(),
        })
}

/// Sets simulated node `node`'s wall clock to run `offset_ms` off true (virtual) time from now
/// on, gaining `drift_ppm` parts per million (negative: losing), and its monotonic clock to run
/// at the same rate error. Calling it again steps the clock.
#[cfg(madsim)]
pub fn set_node_clock(node: ::madsim::task::NodeId, offset_ms: i64, drift_ppm: i64) {
    CLOCKS.with(|c| {
        c.borrow_mut().insert(
            node,
            NodeClock {
                offset_ms,
                drift_ppm,
                since: tokio::time::Instant::now(),
            },
        )
    });
}

/// Forgets every node's clock error (call at the start of each simulated run).
#[cfg(madsim)]
pub fn reset_node_clocks() {
    CLOCKS.with(|c| c.borrow_mut().clear());
}
