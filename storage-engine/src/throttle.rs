//! Throttling: EBS I/O accounting and token buckets that wait, never reject.
//!
//! # Model
//! A volume has a few token buckets, all shared by its attachments and connections:
//! * `ops`: I/O operations per second, counted the EBS way (below);
//! * `bytes`: throughput;
//! * `op_credits` (gp2) and `byte_credits` (st1/sc1): burst credit balances that fill at the
//!   baseline rate and cap a burst's length. While credits last, the `ops`/`bytes` bucket (set to
//!   the burst rate) is the limit; once they are spent, the credit bucket's own fill rate (the
//!   baseline) is.
//!
//! # EBS I/O accounting
//! An I/O counts one operation per `io_unit` (256 KiB for SSD, 1 MiB for HDD): larger I/Os split
//! into several operations, and an I/O that starts where the previous one ended merges into the
//! previous operation until that operation holds a whole unit (8 sequential 32 KiB writes on SSD
//! count once; 8 random ones count 8 times).
//!
//! HDD types (st1, sc1) spend I/O tokens instead ([`Limits::hdd_tokens`]): every operation
//! takes a whole 1 MiB token from the throughput and burst-credit buckets, whatever its size,
//! and only sequential I/Os larger than 32 KiB merge. A 4 KiB random read costs 1 MiB of the
//! budget: a 500 GiB st1 bursting at 125 MiB/s serves about 125 of them a second, not 500
//! (AWS Knowledge Center, "Why isn't my SC1 or ST1 EBS volume achieving the rated throughput
//! performance?").
//!
//! # Waiting
//! Every request takes its tokens at once, possibly driving a bucket into debt, and then sleeps
//! until the debt it is part of is repaid. Requests are served in arrival order (no starvation),
//! nothing is ever rejected, and the delivered rate converges on the configured rate: waits are
//! computed in integer nanoseconds and rounded up, so the limiter neither under-delivers from
//! rounding nor stalls (the failure modes of other limiters noted in `PEERS.md`).
//!
//! Time comes from `tokio::time`, so tests run on paused, virtual time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const NANOS: i128 = 1_000_000_000;

/// One bucket's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketConfig {
    /// Tokens added per second.
    pub rate: u64,
    /// Most tokens the bucket holds (the burst it allows above `rate`).
    pub capacity: u64,
    /// Tokens at the start.
    pub initial: u64,
}

impl BucketConfig {
    /// A bucket refilled at `rate` per second that holds `window` worth of tokens (at least
    /// one), starting full: smooths the start of a stream without a sustained burst.
    pub fn smooth(rate: u64, window: Duration) -> BucketConfig {
        let capacity = ((u128::from(rate) * window.as_nanos()) / NANOS as u128).max(1) as u64;
        BucketConfig {
            rate,
            capacity,
            initial: capacity,
        }
    }
}

/// The limits of one volume. `None` buckets do not limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Operations (in `io_unit`s).
    pub ops: Option<BucketConfig>,
    /// Bytes.
    pub bytes: Option<BucketConfig>,
    /// Burst credits counted in operations (gp2).
    pub op_credits: Option<BucketConfig>,
    /// Burst credits counted in bytes (st1/sc1).
    pub byte_credits: Option<BucketConfig>,
    /// Largest I/O counted as one operation.
    pub io_unit: u64,
    /// HDD I/O tokens: each operation spends a whole `io_unit` of the byte buckets, and an I/O
    /// of [`HDD_MERGE_MIN`] bytes or less never merges with the one before.
    pub hdd_tokens: bool,
}

/// HDD tokens: sequential I/Os merge only when larger than this.
pub const HDD_MERGE_MIN: u64 = 32 * 1024;

impl Limits {
    /// No throttling.
    pub const UNLIMITED: Limits = Limits {
        ops: None,
        bytes: None,
        op_credits: None,
        byte_credits: None,
        io_unit: 256 * 1024,
        hdd_tokens: false,
    };
}

#[derive(Debug)]
struct Bucket {
    cfg: BucketConfig,
    /// Tokens × 10⁹, so refills in whole nanoseconds are exact. Negative: debt.
    level: i128,
    last: Instant,
}

impl Bucket {
    fn new(cfg: BucketConfig, now: Instant) -> Bucket {
        Bucket {
            cfg,
            level: i128::from(cfg.initial) * NANOS,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_nanos() as i128;
        self.last = now;
        let cap = i128::from(self.cfg.capacity) * NANOS;
        self.level = (self.level + i128::from(self.cfg.rate) * dt).min(cap);
    }

    /// Takes `units` and returns how long until the bucket is out of debt.
    fn take(&mut self, units: u64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= i128::from(units) * NANOS;
        self.debt_wait()
    }

    fn debt_wait(&self) -> Duration {
        if self.level >= 0 || self.cfg.rate == 0 {
            return Duration::ZERO;
        }
        // ceil(debt / rate) nanoseconds.
        let rate = i128::from(self.cfg.rate);
        let ns = (-self.level + rate - 1) / rate;
        Duration::from_nanos(ns.min(i128::from(u64::MAX)) as u64)
    }

    /// Keeps the current level (clamped to the new capacity) under a new configuration.
    fn reconfigure(&mut self, cfg: BucketConfig, now: Instant) {
        self.refill(now);
        self.cfg = cfg;
        self.level = self.level.min(i128::from(cfg.capacity) * NANOS);
    }

    fn fraction_full(&self, now: Instant) -> f64 {
        let mut b = Bucket {
            cfg: self.cfg,
            level: self.level,
            last: self.last,
        };
        b.refill(now);
        if b.cfg.capacity == 0 {
            return 0.0;
        }
        (b.level.max(0) as f64 / NANOS as f64 / b.cfg.capacity as f64).clamp(0.0, 1.0)
    }
}

#[derive(Debug)]
struct State {
    limits: Limits,
    ops: Option<Bucket>,
    bytes: Option<Bucket>,
    op_credits: Option<Bucket>,
    byte_credits: Option<Bucket>,
    /// End offset of the previous I/O, for merging sequential I/O.
    last_end: u64,
    /// Bytes already in the current (merged) operation.
    unit_fill: u64,
    /// When demand last exceeded the ops / bytes limit (a request had to wait on it).
    ops_exceeded_at: Option<Instant>,
    bytes_exceeded_at: Option<Instant>,
    /// Operations counted per second over the last minute, a ring indexed by second.
    per_second: [u64; 60],
    /// Second (since `created`) that `per_second` was last written.
    current_second: u64,
    created: Instant,
}

/// How long an exceeded limit keeps its check at 1 (the CloudWatch check period).
const CHECK_WINDOW: Duration = Duration::from_secs(60);

/// What a request cost and how long it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// EBS operations counted.
    pub ops: u64,
    /// Time the request was held.
    pub waited: Duration,
}

/// The throttle of one volume.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
}

fn reconcile(slot: &mut Option<Bucket>, cfg: Option<BucketConfig>, now: Instant) {
    match (slot.as_mut(), cfg) {
        (Some(b), Some(c)) if b.cfg != c => b.reconfigure(c, now),
        (Some(_), Some(_)) => {}
        (None, Some(c)) => *slot = Some(Bucket::new(c, now)),
        (_, None) => *slot = None,
    }
}

impl Throttle {
    /// A throttle enforcing `limits`.
    pub fn new(limits: Limits) -> Throttle {
        let now = Instant::now();
        let mut st = State {
            limits,
            ops: None,
            bytes: None,
            op_credits: None,
            byte_credits: None,
            last_end: u64::MAX,
            unit_fill: 0,
            ops_exceeded_at: None,
            bytes_exceeded_at: None,
            per_second: [0; 60],
            current_second: 0,
            created: now,
        };
        reconcile(&mut st.ops, limits.ops, now);
        reconcile(&mut st.bytes, limits.bytes, now);
        reconcile(&mut st.op_credits, limits.op_credits, now);
        reconcile(&mut st.byte_credits, limits.byte_credits, now);
        Throttle {
            state: Mutex::new(st),
        }
    }

    /// Applies new limits at once (ModifyVolume). Credit balances carry over.
    pub fn set_limits(&self, limits: Limits) {
        let now = Instant::now();
        let mut st = self.lock();
        st.limits = limits;
        reconcile(&mut st.ops, limits.ops, now);
        reconcile(&mut st.bytes, limits.bytes, now);
        reconcile(&mut st.op_credits, limits.op_credits, now);
        reconcile(&mut st.byte_credits, limits.byte_credits, now);
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// Burst credits left, as a fraction of the maximum (gp2, st1, sc1); `None` for types
    /// without burst credits.
    pub fn burst_balance(&self) -> Option<f64> {
        let now = Instant::now();
        let st = self.lock();
        st.op_credits
            .as_ref()
            .or(st.byte_credits.as_ref())
            .map(|b| b.fraction_full(now))
    }

    /// Whether demand exceeded the ops limit / the throughput limit in the last minute
    /// (CloudWatch `VolumeIOPSExceededCheck` / `VolumeThroughputExceededCheck`).
    pub fn exceeded_checks(&self) -> (bool, bool) {
        let now = Instant::now();
        let st = self.lock();
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < CHECK_WINDOW);
        (recent(st.ops_exceeded_at), recent(st.bytes_exceeded_at))
    }

    /// Operations counted over the last 60 seconds.
    pub fn ops_last_minute(&self) -> u64 {
        let now = Instant::now();
        let mut st = self.lock();
        Throttle::advance_window(&mut st, now);
        st.per_second.iter().sum()
    }

    /// Moves the per-second ring to `now`, zeroing the seconds that passed without I/O.
    fn advance_window(st: &mut State, now: Instant) -> usize {
        let sec = now.saturating_duration_since(st.created).as_secs();
        let gap = sec.saturating_sub(st.current_second).min(60);
        for i in 1..=gap {
            st.per_second[((st.current_second + i) % 60) as usize] = 0;
        }
        st.current_second = sec;
        (sec % 60) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain arithmetic under the lock: a poisoned lock holds consistent numbers.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an I/O of `len` bytes at `offset` in EBS operations (and records it for merging).
    fn count_ops(st: &mut State, offset: u64, len: u64) -> u64 {
        let unit = st.limits.io_unit.max(1);
        let mergeable = !st.limits.hdd_tokens || len > HDD_MERGE_MIN;
        let sequential =
            mergeable && offset == st.last_end && st.unit_fill > 0 && st.unit_fill < unit;
        st.last_end = offset.saturating_add(len);
        let mut rest = len;
        if sequential {
            let room = unit - st.unit_fill;
            if rest <= room {
                st.unit_fill += rest;
                return 0;
            }
            rest -= room;
        }
        if rest == 0 {
            st.unit_fill = 0;
            return 0;
        }
        let ops = rest.div_ceil(unit);
        st.unit_fill = rest - (ops - 1) * unit;
        ops
    }

    /// Takes the tokens of an I/O and returns how long it must wait.
    pub fn reserve(&self, offset: u64, len: u64) -> Admission {
        self.reserve_at(Instant::now(), offset, len)
    }

    /// [`Throttle::reserve`] as of `now`, a moment the caller has just read from the clock (one
    /// clock read serves a request's throttles and counters).
    pub fn reserve_at(&self, now: Instant, offset: u64, len: u64) -> Admission {
        let mut st = self.lock();
        let ops = Throttle::count_ops(&mut st, offset, len);
        let slot = Throttle::advance_window(&mut st, now);
        st.per_second[slot] += ops;
        let take =
            |b: &mut Option<Bucket>, n: u64| b.as_mut().map_or(Duration::ZERO, |b| b.take(n, now));
        let ops_wait = take(&mut st.ops, ops).max(take(&mut st.op_credits, ops));
        // HDD: the byte budget is spent in whole tokens, one per operation.
        let bytes = if st.limits.hdd_tokens {
            ops.saturating_mul(st.limits.io_unit)
        } else {
            len
        };
        let bytes_wait = take(&mut st.bytes, bytes).max(take(&mut st.byte_credits, bytes));
        if !ops_wait.is_zero() {
            st.ops_exceeded_at = Some(now);
        }
        if !bytes_wait.is_zero() {
            st.bytes_exceeded_at = Some(now);
        }
        Admission {
            ops,
            waited: ops_wait.max(bytes_wait),
        }
    }

    /// Waits until an I/O of `len` bytes at `offset` may proceed.
    pub async fn admit(&self, offset: u64, len: u64) -> Admission {
        let a = self.reserve(offset, len);
        if !a.waited.is_zero() {
            tokio::time::sleep(a.waited).await;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;

    fn iops_limits(iops: u64, unit: u64) -> Limits {
        Limits {
            ops: Some(BucketConfig::smooth(iops, Duration::from_millis(10))),
            io_unit: unit,
            ..Limits::UNLIMITED
        }
    }

    #[test]
    fn counts_ios_the_ebs_way() {
        let t = Throttle::new(iops_limits(1_000_000, 256 * KIB));
        let mut st = t.lock();
        let c = |st: &mut State, off, len| Throttle::count_ops(st, off, len);
        assert_eq!(c(&mut st, 0, MIB), 4, "1 MiB on SSD = 4 operations");
        let mut total = 0;
        for i in 0..8 {
            total += c(&mut st, 10 * MIB + i * 32 * KIB, 32 * KIB);
        }
        assert_eq!(total, 1, "8 sequential 32 KiB = 1 operation");
        let mut total = 0;
        for i in 0..8 {
            total += c(&mut st, 100 * MIB + i * 3 * MIB, 32 * KIB);
        }
        assert_eq!(total, 8, "8 random 32 KiB = 8 operations");
        assert_eq!(c(&mut st, 200 * MIB, 512), 1);
        assert_eq!(c(&mut st, 300 * MIB, 32 * MIB), 128, "32 MiB = 128 units");
        assert_eq!(c(&mut st, 400 * MIB, 256 * KIB + 512), 2);
        drop(st);
        let hdd = Throttle::new(iops_limits(500, MIB));
        let mut st = hdd.lock();
        assert_eq!(
            Throttle::count_ops(&mut st, 0, MIB),
            1,
            "HDD: 1 MiB = 1 operation"
        );
        let mut total = 0;
        for i in 0..8 {
            total += Throttle::count_ops(&mut st, 10 * MIB + i * 128 * KIB, 128 * KIB);
        }
        assert_eq!(total, 1, "HDD: 8 sequential 128 KiB = 1 operation");
        assert_eq!(
            Throttle::count_ops(&mut st, 50 * MIB, 4 * KIB),
            1,
            "small random I/O counts whole"
        );
    }

    #[test]
    fn hdd_tokens_merge_only_large_sequential_io() {
        let hdd = Throttle::new(Limits {
            hdd_tokens: true,
            ..iops_limits(500, MIB)
        });
        let mut st = hdd.lock();
        let c = |st: &mut State, off, len| Throttle::count_ops(st, off, len);
        let total: u64 = (0..8).map(|i| c(&mut st, i * 128 * KIB, 128 * KIB)).sum();
        assert_eq!(total, 1, "8 sequential 128 KiB = 1 token");
        let total: u64 = (0..8)
            .map(|i| c(&mut st, 10 * MIB + i * 64 * KIB, 64 * KIB))
            .sum();
        assert_eq!(total, 1, "sequential 64 KiB merges");
        let total: u64 = (0..8)
            .map(|i| c(&mut st, 20 * MIB + i * 32 * KIB, 32 * KIB))
            .sum();
        assert_eq!(total, 8, "sequential 32 KiB does not merge");
        let total: u64 = (0..8)
            .map(|i| c(&mut st, 40 * MIB + i * 4 * KIB, 4 * KIB))
            .sum();
        assert_eq!(total, 8, "sequential 4 KiB does not merge");
        assert_eq!(c(&mut st, 60 * MIB, 4 * MIB), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn hdd_small_random_io_spends_whole_tokens_of_throughput() {
        // A 500 GiB st1 bursting: 500 IOPS, about 122 MiB/s.
        let st1 = |hdd_tokens| Limits {
            ops: Some(BucketConfig::smooth(500, Duration::from_millis(10))),
            bytes: Some(BucketConfig::smooth(122 * MIB, Duration::from_millis(10))),
            io_unit: MIB,
            hdd_tokens,
            ..Limits::UNLIMITED
        };
        let rate = |elapsed: Duration| 2_000.0 / elapsed.as_secs_f64();
        let tokens = rate(drive(&Throttle::new(st1(true)), 2_000).await);
        assert!(
            (tokens - 122.0).abs() / 122.0 < 0.02,
            "random 4 KiB: {tokens} IOPS"
        );
        let without = rate(drive(&Throttle::new(st1(false)), 2_000).await);
        assert!((without - 500.0).abs() / 500.0 < 0.02, "{without} IOPS");
        // Large sequential I/O is one token per MiB: the throughput limit, as without tokens.
        let t = Throttle::new(st1(true));
        let start = Instant::now();
        for i in 0..1_000u64 {
            t.admit(i * 128 * KIB, 128 * KIB).await;
        }
        let mib_s = 125.0 / start.elapsed().as_secs_f64();
        assert!(
            (mib_s - 122.0).abs() / 122.0 < 0.03,
            "sequential 128 KiB: {mib_s} MiB/s"
        );
    }

    /// Drives `n` random 4 KiB I/Os through `t` as fast as allowed; returns the elapsed time.
    async fn drive(t: &Throttle, n: u64) -> Duration {
        let start = Instant::now();
        for i in 0..n {
            t.admit(i * 7 * MIB, 4 * KIB).await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_provisioned_iops() {
        let t = Throttle::new(iops_limits(3_000, 256 * KIB));
        let elapsed = drive(&t, 30_000).await;
        let rate = 30_000.0 / elapsed.as_secs_f64();
        assert!((rate - 3_000.0).abs() / 3_000.0 < 0.01, "rate {rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn throughput_caps_large_io() {
        let limits = Limits {
            ops: Some(BucketConfig::smooth(3_000, Duration::from_millis(10))),
            bytes: Some(BucketConfig::smooth(125 * MIB, Duration::from_millis(10))),
            ..Limits::UNLIMITED
        };
        let t = Throttle::new(limits);
        let start = Instant::now();
        for i in 0..1250 {
            t.admit(i * MIB, MIB).await;
        }
        let mibs = 1250.0 / start.elapsed().as_secs_f64();
        assert!((mibs - 125.0).abs() / 125.0 < 0.01, "MiB/s {mibs}");
    }

    #[tokio::test(start_paused = true)]
    async fn gp2_bursts_then_falls_to_baseline() {
        // 100 GiB gp2: baseline 300, burst 3,000, 5.4 M credits: 2,000 s of burst.
        let limits = Limits {
            ops: Some(BucketConfig::smooth(3_000, Duration::from_millis(10))),
            op_credits: Some(BucketConfig {
                rate: 300,
                capacity: 5_400_000,
                initial: 5_400_000,
            }),
            ..Limits::UNLIMITED
        };
        let t = Throttle::new(limits);
        // 30 minutes flat out: all at the burst rate.
        let burst = drive(&t, 3_000 * 1_800).await;
        let rate = (3_000.0 * 1_800.0) / burst.as_secs_f64();
        assert!((rate - 3_000.0).abs() / 3_000.0 < 0.01, "burst rate {rate}");
        assert!(t.burst_balance().unwrap() < 0.1);
        // Credits run out at ~2,000 s; from then on the baseline holds.
        drive(&t, 3_000 * 300).await;
        let tail = drive(&t, 300 * 60).await;
        let rate = (300.0 * 60.0) / tail.as_secs_f64();
        assert!((rate - 300.0).abs() / 300.0 < 0.02, "baseline rate {rate}");
        assert!(t.burst_balance().unwrap() < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn st1_credits_drain_then_baseline() {
        // A scaled-down st1: burst 50 MiB/s, baseline 10 MiB/s, 200 MiB of credits. Bursting
        // drains credits at 40 MiB/s net, so the burst lasts 5 s, then the baseline holds.
        let limits = Limits {
            ops: Some(BucketConfig::smooth(500, Duration::from_millis(10))),
            bytes: Some(BucketConfig::smooth(50 * MIB, Duration::from_millis(10))),
            byte_credits: Some(BucketConfig {
                rate: 10 * MIB,
                capacity: 200 * MIB,
                initial: 200 * MIB,
            }),
            io_unit: MIB,
            ..Limits::UNLIMITED
        };
        let t = Throttle::new(limits);
        let mut offset = 0;
        let mut stream = |n: u64| {
            let start = offset;
            offset += n;
            (start..start + n).map(|i| i * MIB).collect::<Vec<_>>()
        };
        let start = Instant::now();
        for off in stream(200) {
            t.admit(off, MIB).await;
        }
        let burst = 200.0 / start.elapsed().as_secs_f64();
        assert!((burst - 50.0).abs() / 50.0 < 0.02, "burst MiB/s {burst}");
        for off in stream(100) {
            t.admit(off, MIB).await;
        }
        assert!(t.burst_balance().unwrap() < 0.01, "credits spent");
        let start = Instant::now();
        for off in stream(100) {
            t.admit(off, MIB).await;
        }
        let base = 100.0 / start.elapsed().as_secs_f64();
        assert!((base - 10.0).abs() / 10.0 < 0.02, "baseline MiB/s {base}");
    }

    #[tokio::test(start_paused = true)]
    async fn credits_refill_when_idle() {
        let limits = Limits {
            bytes: Some(BucketConfig::smooth(250 * MIB, Duration::from_millis(10))),
            byte_credits: Some(BucketConfig {
                rate: 40 * MIB,
                capacity: 1024 * MIB,
                initial: 0,
            }),
            io_unit: MIB,
            ..Limits::UNLIMITED
        };
        let t = Throttle::new(limits);
        assert!(t.burst_balance().unwrap() < 0.01);
        tokio::time::sleep(Duration::from_secs(1024 / 40 + 1)).await;
        assert!(
            t.burst_balance().unwrap() > 0.99,
            "refilled at the baseline rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn modification_applies_mid_stream() {
        let t = Throttle::new(iops_limits(1_000, 256 * KIB));
        let slow = drive(&t, 5_000).await;
        t.set_limits(iops_limits(10_000, 256 * KIB));
        let fast = drive(&t, 50_000).await;
        assert!((slow.as_secs_f64() - 5.0).abs() < 0.05, "{slow:?}");
        assert!((fast.as_secs_f64() - 5.0).abs() < 0.05, "{fast:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_waiter_starves() {
        let t = std::sync::Arc::new(Throttle::new(iops_limits(2_000, 256 * KIB)));
        let mut tasks = Vec::new();
        for c in 0..64u64 {
            let t = std::sync::Arc::clone(&t);
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                for i in 0..100u64 {
                    t.admit((c * 1000 + i) * 7 * MIB, 4 * KIB).await;
                }
                start.elapsed()
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        // 6,400 I/Os at 2,000/s take 3.2 s. FIFO service interleaves the connections, so none
        // finishes much after the total (nobody starves) and none runs far ahead.
        for d in &times {
            let s = d.as_secs_f64();
            assert!((2.4..=3.25).contains(&s), "{times:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exceeded_checks_and_minute_window() {
        let t = Throttle::new(iops_limits(100, 256 * KIB));
        assert_eq!(t.exceeded_checks(), (false, false));
        drive(&t, 500).await;
        assert_eq!(t.exceeded_checks(), (true, false));
        let last_minute = t.ops_last_minute();
        assert!((495..=500).contains(&last_minute), "{last_minute}");
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(t.exceeded_checks(), (false, false));
        assert_eq!(t.ops_last_minute(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let t = Throttle::new(Limits::UNLIMITED);
        for i in 0..1000 {
            assert_eq!(t.admit(i * MIB, MIB).await.waited, Duration::ZERO);
        }
    }
}
