//! The cluster clock of one replica: the time a leader stamps on each entry it proposes, which
//! the replicated state uses for invisibility deadlines and store timestamps.
//!
//! Stamping the leader's wall clock as is would let a failover move time: a new leader whose
//! clock runs ahead of the old one's by Δ would expire every receipt Δ early, and hand a message
//! to a second consumer while the first still holds it. So cluster time is *slewed*: it follows
//! the stamping replica's wall clock, but never runs faster or slower than that replica's
//! monotonic clock by more than [`SLEW_PPM`], and never backwards. A failover or a stepped
//! wall clock then changes how fast cluster time converges, never how long a duration lasts:
//! an invisible duration `d` lasts at least `d × (1 − SLEW_PPM/10⁶)` − 0.2 ms of the leaders'
//! monotonic time (docs/guarantees.md). A replica anchors its estimate on its own stamps and on the
//! entries it applies, so whichever replica leads next continues the same timeline.

use std::sync::Mutex;

use tokio::time::Instant;

/// The largest rate difference between cluster time and a replica's monotonic clock, in parts
/// per million (1 ms per second). It bounds both how fast cluster time converges to a leader's
/// wall clock and how much a duration measured in cluster time may shrink or stretch.
pub const SLEW_PPM: u64 = 1_000;

/// How long a stamping replica keeps one anchor. Re-anchoring on every stamp would let the
/// small disagreements between the wall and monotonic clocks add up (each clamped stamp loses
/// a little); keeping an anchor for 100 ms bounds what any interval inside it may lose to
/// `2 × SLEW_PPM × 100 ms` = 0.2 ms.
const ANCHOR_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// Cluster time at `at`, in nanoseconds.
    ns: u64,
    at: Instant,
    /// The log index whose application set (or last refreshed) this anchor; none for an
    /// anchor of this replica's own stamps or of an unapplied entry.
    applied: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The last term this replica began leading ([`ClusterClock::begin_term`]).
    led_term: u64,
    anchor: Option<Anchor>,
    /// The latest stamp this replica issued (ns): stamps never go back, and entries at or
    /// below it are this replica's own and do not move the anchor.
    last_stamp: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct ClusterClock {
    inner: Mutex<Inner>,
}

/// The range (in ns) cluster time may be in `elapsed_ns` of monotonic time after it was
/// `anchor_ns`: that much later, give or take the slew. Pure, for tests.
pub fn slew_bounds(anchor_ns: u64, elapsed_ns: u64) -> (u64, u64) {
    let e = elapsed_ns as u128;
    let lo = e * (1_000_000 - SLEW_PPM as u128) / 1_000_000;
    let hi = e * (1_000_000 + SLEW_PPM as u128) / 1_000_000;
    (anchor_ns + lo as u64, anchor_ns + hi as u64)
}

fn elapsed_ns(a: &Anchor) -> u64 {
    raft_store::rt::elapsed_since(a.at).as_nanos() as u64
}

impl Inner {
    fn estimate_ns(&self, wall_ns: u64) -> u64 {
        let t = match self.anchor {
            None => wall_ns,
            Some(a) => {
                let (lo, hi) = slew_bounds(a.ns, elapsed_ns(&a));
                wall_ns.clamp(lo, hi)
            }
        };
        t.max(self.last_stamp)
    }
}

impl ClusterClock {
    /// A clock with no anchor yet: the first stamp is the wall clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The time (ms) to stamp on an entry proposed now. Never less than an earlier stamp or an
    /// observed entry time of this replica.
    pub fn stamp(&self) -> u64 {
        let wall = raft_store::rt::wall_ns();
        let mut inner = self.inner.lock().unwrap();
        let t = inner.estimate_ns(wall);
        inner.last_stamp = t;
        if inner.anchor.is_none_or(|a| elapsed_ns(&a) >= ANCHOR_NS) {
            inner.anchor = Some(Anchor {
                ns: t,
                at: Instant::now(),
                applied: None,
            });
        }
        t / 1_000_000
    }

    /// This replica's estimate of cluster time now (ms), without stamping (for deciding whether
    /// a receipt has expired before proposing, and for timestamps in answers).
    pub fn now(&self) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .estimate_ns(raft_store::rt::wall_ns())
            / 1_000_000
    }

    /// This replica starts leading a new term, and its log reaches cluster time `log_ms` (the
    /// highest time of its newest entries and its state): the timeline continues from there,
    /// even if this replica's own estimate is ahead. It can be ahead by its own stamps that
    /// never reached the log, or by a timeline it anchored on something newer than the log.
    /// Continuing its own timeline would move cluster time forward by the gap at the hand-over
    /// and expire receipts early (`cluster_chaos` seed 9152: leaders alternating after every
    /// commit under packet loss, a 0.45 s jump). Continuing the log's stretches durations
    /// instead, which is safe.
    ///
    /// Where it continues from: if this replica anchored when it applied the newest broker
    /// entry of its log (`last_index`; blank and membership entries carry no time), at the
    /// log's time, from that anchor, so the time since the
    /// entry counts. That entry's stamp is the log's time (stamps never decrease along the
    /// log) and its leader stamped it before this replica applied it, so the projection trails
    /// that leader's timeline, never ahead; and no later entry is committed (this replica
    /// won an election with it as its last). Otherwise from `log_ms` now, losing the time
    /// since the entry. Matching the time alone is not enough: two leaders often stamp the
    /// same millisecond, and an anchor taken when the first one's entry applied would put the
    /// second one's receipts behind by the time between them (review of issue 14).
    /// Restarting from the entry's time after an idle spell left cluster time behind for good
    /// (it catches up at the slew rate only): `raftmq dev`'s preferred-leader transfer 3 s
    /// after start made every scheduled message 3 s late (issue 14).
    pub fn lead_from(&self, log_ms: u64, last_index: u64) {
        Self::rebase(&mut self.inner.lock().unwrap(), log_ms, last_index);
    }

    fn rebase(inner: &mut Inner, log_ms: u64, last_index: u64) {
        let ns = log_ms.saturating_mul(1_000_000);
        let at = match inner.anchor {
            Some(a) if a.ns == ns && a.applied == Some(last_index) => a.at,
            _ => Instant::now(),
        };
        inner.anchor = Some(Anchor {
            ns,
            at,
            applied: None,
        });
        inner.last_stamp = ns;
    }

    /// Called before stamping (or deciding on the time) as leader of `term`: the first time
    /// for a term, continues from the log's time and last index, `log()`
    /// ([`ClusterClock::lead_from`]; time 0, an empty log, keeps the clock as it is).
    pub fn begin_term(&self, term: u64, log: impl FnOnce() -> (u64, u64)) {
        if self.inner.lock().unwrap().led_term >= term {
            return;
        }
        // Read outside the lock (it reads the log); the term is marked begun only together
        // with the rebase, so a concurrent caller that sees it begun also sees the new
        // timeline (the batcher and the retention task both call this).
        let (ms, last_index) = log();
        let mut inner = self.inner.lock().unwrap();
        if inner.led_term >= term {
            return;
        }
        inner.led_term = term;
        if ms > 0 {
            Self::rebase(&mut inner, ms, last_index);
        }
    }

    /// An applied entry (log index `applied`; or a restored snapshot, its last index; none
    /// for an entry not applied yet) carries cluster time `ms`. If another replica stamped it
    /// later than anything seen here, re-anchor on it, so a follower that becomes leader
    /// continues the leader's timeline. At the anchor's very time, the anchor moves to now
    /// and this entry: that only moves the timeline back, and says the replica applied it.
    pub fn observe(&self, ms: u64, applied: Option<u64>) {
        let ns = ms.saturating_mul(1_000_000);
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        let newer = ns > inner.last_stamp && inner.anchor.is_none_or(|a| ns > a.ns);
        match &mut inner.anchor {
            Some(a) if a.ns == ns => {
                a.at = now;
                a.applied = applied;
            }
            _ if newer => {
                inner.anchor = Some(Anchor {
                    ns,
                    at: now,
                    applied,
                });
            }
            _ => {}
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A wall clock far ahead of the timeline (a new leader whose clock is fast, or a step)
    /// moves cluster time no faster than the slew allows: 10 s of monotonic time are at most
    /// 10.01 s of cluster time.
    #[test]
    fn a_clock_ahead_is_slewed_not_jumped_to() {
        let s = 1_000_000_000_000; // ns
        let (lo, hi) = slew_bounds(s, 10_000_000_000);
        let wall = s + 60_000_000_000;
        assert_eq!(wall.clamp(lo, hi) - s, 10_010_000_000);
    }

    /// A wall clock behind the timeline never moves cluster time back, and time still passes
    /// at least at the slowed rate: 10 s are at least 9.99 s.
    #[test]
    fn a_clock_behind_never_moves_time_back() {
        let s = 1_000_000_000_000; // ns
        let (lo, hi) = slew_bounds(s, 10_000_000_000);
        let wall = s - 60_000_000_000;
        assert_eq!(wall.clamp(lo, hi) - s, 9_990_000_000);
        assert!(lo >= s && hi >= lo);
    }

    /// A replica whose timeline is a minute behind its own clock does not jump on its first
    /// stamp, and its stamps never go back.
    #[tokio::test]
    async fn a_new_leader_continues_the_timeline() {
        let c = ClusterClock::new();
        let behind = raft_store::rt::wall_ms() - 60_000;
        c.observe(behind, Some(1)); // applied the previous leader's entries
        let mut last = 0;
        for _ in 0..10 {
            let t = c.stamp();
            assert!(t >= last && t >= behind);
            assert!(t <= behind + 1_000, "{} ms jump", t - behind);
            last = t;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A busy leader stamping back to back keeps pace with an accurate wall clock (whole
    /// milliseconds in the anchor lost a fraction per stamp and fell behind).
    #[test]
    fn back_to_back_stamps_keep_pace() {
        let c = ClusterClock::new();
        let start = raft_store::rt::wall_ms();
        let mut n = 0;
        while raft_store::rt::wall_ms() < start + 50 {
            c.stamp();
            n += 1;
        }
        let wall = raft_store::rt::wall_ms();
        assert!(
            wall.abs_diff(c.now()) <= 1,
            "{wall} vs {} after {n} stamps",
            c.now()
        );
    }

    /// A replica whose own timeline ran ahead of the log (a follower's entries trail by its
    /// apply delay) continues the log's timeline when it begins a term, once per term, and
    /// its stamps rise from there (seed 9152 saw a 0.45 s forward jump at a hand-over).
    #[test]
    fn a_new_term_continues_the_log_not_its_own_timeline() {
        let c = ClusterClock::new();
        let ahead = c.stamp();
        let log = ahead - 500;
        c.begin_term(7, || (log, 1));
        let t = c.stamp();
        assert!(t >= log && t < ahead, "{t} not continued from {log}");
        // Once per term: a second call with the same term changes nothing.
        c.begin_term(7, || (0, 0));
        assert!(c.stamp() >= t);
        // An empty log (0) keeps the clock.
        let before = c.stamp();
        c.begin_term(8, || (0, 0));
        assert!(c.stamp() >= before);
    }

    /// A replica that applied the newest entry and leads after an idle spell continues from
    /// that entry plus the time since it applied it, not from the entry's time now (which
    /// left cluster time behind by the idle spell for good; issue 14).
    #[tokio::test]
    async fn a_hand_over_after_an_idle_spell_keeps_time() {
        let c = ClusterClock::new();
        let newest = raft_store::rt::wall_ms();
        c.observe(newest, Some(9)); // applied the old leader's newest entry
        tokio::time::sleep(Duration::from_millis(300)).await; // idle
        c.begin_term(3, || (newest, 9));
        let t = c.stamp();
        let wall = raft_store::rt::wall_ms();
        assert!(
            t >= newest + 290,
            "{} ms behind after the hand-over",
            wall - t
        );
        assert!(t <= wall + 1, "{} ms ahead of the wall clock", t - wall);
    }

    /// A replica whose anchor is not the log's newest time (its own stamps ran ahead of the
    /// log, or it has not applied the newest entry) continues from the log's time now.
    #[tokio::test]
    async fn a_leader_whose_anchor_is_not_the_log_continues_the_log_now() {
        let c = ClusterClock::new();
        let ahead = c.stamp();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let log = ahead - 500;
        c.begin_term(4, || (log, 5));
        let t = c.stamp();
        assert!(t >= log && t <= log + 5, "{t} not continued from {log} now");
    }

    /// Two leaders stamped the same millisecond: an anchor taken when the first one's entry
    /// applied is not kept when the log ends with the second one's, or the new leader would
    /// run ahead of the second one's receipts by the time between them (review of issue 14).
    #[tokio::test]
    async fn an_anchor_of_an_earlier_entry_at_the_same_time_is_not_kept() {
        let c = ClusterClock::new();
        let l = raft_store::rt::wall_ms();
        c.observe(l, Some(10)); // applied entry 10, stamped l by one leader
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Entry 11, stamped l by the next leader, is in the log but not applied here.
        c.begin_term(5, || (l, 11));
        let t = c.stamp();
        assert!(t <= l + 2, "{} ms ahead of the log's time", t - l);
        // Applied, the same time refreshes the anchor to now: kept from there on.
        let c = ClusterClock::new();
        c.observe(l, Some(10));
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.observe(l, Some(11));
        c.begin_term(5, || (l, 11));
        let t = c.stamp();
        assert!(t <= l + 2, "{} ms ahead after a refresh", t - l);
    }

    /// With an accurate clock, stamps are the wall clock.
    #[tokio::test]
    async fn stamps_follow_an_accurate_clock() {
        let c = ClusterClock::new();
        let mut last = 0;
        for _ in 0..20 {
            let t = c.stamp();
            assert!(t >= last);
            last = t;
            c.observe(t.saturating_sub(5), Some(1)); // its own, older entries applied
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = raft_store::rt::wall_ms();
        assert!(wall.abs_diff(c.now()) <= 1, "{wall} vs {}", c.now());
    }
}
