//! The workload generator a host runs against one device (DESIGN.md §5 "Host", §8
//! `"op": "workload"`): sequential or random, read / write / mixed, a fixed I/O size,
//! a queue depth, a count or time limit, and optional read-back verification. Sans-IO:
//! it plans I/Os and is told when they complete; the host turns them into SCSI
//! commands. Time is an argument, randomness comes from the spec's seed.
//!
//! The host records every planned write in the [`History`](crate::history::History)
//! (the oracle of the checks); the generator itself only verifies what it reads back.
//!
//! Start here: [`WorkloadSpec`] (the configuration), then [`Workload`] (the engine).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where the I/Os go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// One I/O after the other from the start of the range, wrapping at its end.
    Sequential,
    /// Uniformly random offsets, aligned to the I/O size from the start of the range
    /// (as fio does by default). Concurrent I/Os may overlap.
    #[default]
    Random,
}

/// Reads, writes or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mix {
    /// Reads only.
    Read,
    /// Writes only.
    #[default]
    Write,
    /// Each I/O is a read with probability `read_percent` / 100.
    Mixed {
        /// Percentage of reads, 0..=100.
        read_percent: u8,
    },
}

/// When the workload stops issuing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// After this many reads and writes (verify reads not counted).
    Count(u64),
    /// Until this long after [`Workload::start`]; JSON `{"duration_us": N}`.
    #[serde(rename = "duration_us", with = "micros")]
    Duration(Duration),
}

impl Default for Limit {
    fn default() -> Self {
        Limit::Count(1000)
    }
}

/// (De)serialize a [`Duration`] as whole microseconds.
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

/// One workload, as a scenario step or an API call describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Name the checks and the report refer to.
    pub name: String,
    /// Sequential or random offsets.
    #[serde(default)]
    pub pattern: Pattern,
    /// Reads, writes or both.
    #[serde(default)]
    pub mix: Mix,
    /// Size of every I/O in bytes; a non-zero multiple of the LU block size.
    pub block_bytes: u32,
    /// Most I/Os outstanding at once (verify reads included); at least 1.
    pub qd: u32,
    /// When to stop issuing.
    pub limit: Limit,
    /// Read back every acknowledged write and compare it byte for byte.
    #[serde(default)]
    pub verify: bool,
    /// LBA range `[start, end)` in LU blocks; `None` = the whole device.
    #[serde(default)]
    pub lba_range: Option<(u64, u64)>,
    /// Seed of the offsets, the read/write choice and the write data.
    #[serde(default)]
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            name: "w".to_owned(),
            pattern: Pattern::default(),
            mix: Mix::default(),
            block_bytes: 4096,
            qd: 1,
            limit: Limit::default(),
            verify: false,
            lba_range: None,
            seed: 0,
        }
    }
}

/// A workload spec that cannot run on the device. Every variant names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// The device reports a zero block size or no blocks.
    #[error("device: {blocks} blocks of {block_bytes} bytes cannot hold a workload")]
    EmptyDevice {
        /// Device capacity in blocks.
        blocks: u64,
        /// Device block size.
        block_bytes: u32,
    },
    /// `block_bytes` is zero or not a multiple of the LU block size.
    #[error(
        "block_bytes: {block_bytes} is not a non-zero multiple of the LU block size {lu_block_bytes}"
    )]
    BlockBytesNotMultiple {
        /// The I/O size asked for.
        block_bytes: u32,
        /// The device's block size.
        lu_block_bytes: u32,
    },
    /// `qd` is zero.
    #[error("qd: queue depth must be at least 1")]
    QueueDepthZero,
    /// `mix.read_percent` is above 100.
    #[error("mix.read_percent: {read_percent} is above 100")]
    ReadPercent {
        /// The percentage asked for.
        read_percent: u8,
    },
    /// `lba_range` is empty or reversed.
    #[error("lba_range: [{start}, {end}) is empty")]
    EmptyRange {
        /// Start block.
        start: u64,
        /// End block (exclusive).
        end: u64,
    },
    /// `lba_range` ends past the device.
    #[error("lba_range: end {end} is past the end of the device ({device_blocks} blocks)")]
    RangePastEnd {
        /// End block (exclusive).
        end: u64,
        /// Device capacity in blocks.
        device_blocks: u64,
    },
    /// One I/O does not fit in the range.
    #[error(
        "block_bytes: one I/O of {io_blocks} blocks does not fit in lba_range of {range_blocks} blocks"
    )]
    IoLargerThanRange {
        /// Blocks per I/O.
        io_blocks: u64,
        /// Blocks in the range.
        range_blocks: u64,
    },
    /// [`Workload::complete`] for an I/O that is not outstanding.
    #[error("id: no outstanding I/O {id}")]
    UnknownIo {
        /// The id given.
        id: u64,
    },
}

impl WorkloadError {
    /// The spec field at fault (for an INVALID_ARGUMENT naming it).
    pub fn field(&self) -> &'static str {
        match self {
            WorkloadError::EmptyDevice { .. } => "target",
            WorkloadError::BlockBytesNotMultiple { .. }
            | WorkloadError::IoLargerThanRange { .. } => "block_bytes",
            WorkloadError::QueueDepthZero => "qd",
            WorkloadError::ReadPercent { .. } => "mix.read_percent",
            WorkloadError::EmptyRange { .. } | WorkloadError::RangePastEnd { .. } => "lba_range",
            WorkloadError::UnknownIo { .. } => "id",
        }
    }
}

impl WorkloadSpec {
    /// Check the spec against a device of `device_blocks` blocks of `lu_block_bytes`.
    pub fn validate(&self, device_blocks: u64, lu_block_bytes: u32) -> Result<(), WorkloadError> {
        if device_blocks == 0 || lu_block_bytes == 0 {
            return Err(WorkloadError::EmptyDevice {
                blocks: device_blocks,
                block_bytes: lu_block_bytes,
            });
        }
        if self.block_bytes == 0 || !self.block_bytes.is_multiple_of(lu_block_bytes) {
            return Err(WorkloadError::BlockBytesNotMultiple {
                block_bytes: self.block_bytes,
                lu_block_bytes,
            });
        }
        if self.qd == 0 {
            return Err(WorkloadError::QueueDepthZero);
        }
        if let Mix::Mixed { read_percent } = self.mix
            && read_percent > 100
        {
            return Err(WorkloadError::ReadPercent { read_percent });
        }
        let (start, end) = self.lba_range.unwrap_or((0, device_blocks));
        if start >= end {
            return Err(WorkloadError::EmptyRange { start, end });
        }
        if end > device_blocks {
            return Err(WorkloadError::RangePastEnd { end, device_blocks });
        }
        let io_blocks = u64::from(self.block_bytes / lu_block_bytes);
        if io_blocks > end - start {
            return Err(WorkloadError::IoLargerThanRange {
                io_blocks,
                range_blocks: end - start,
            });
        }
        Ok(())
    }
}

/// What an I/O does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoKind {
    /// A read of the workload.
    Read,
    /// A write of the workload.
    Write,
    /// A read-back of an acknowledged write.
    Verify,
}

/// An I/O for the host to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedIo {
    /// Identifier to pass back to [`Workload::complete`]; increasing.
    pub id: u64,
    /// What it does.
    pub kind: IoKind,
    /// First LU block.
    pub lba: u64,
    /// Number of LU blocks.
    pub blocks: u32,
    /// Data to write (`Some` for writes only); shared, never copied.
    pub data: Option<Bytes>,
}

/// How an I/O ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDone {
    /// GOOD status.
    pub ok: bool,
    /// Data read (reads and verifies).
    pub data: Option<Bytes>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Median (bucket upper bound, at most `max`).
    pub p50: u64,
    /// 99th percentile (bucket upper bound, at most `max`).
    pub p99: u64,
    /// Largest seen.
    pub max: u64,
}

/// Log-linear latency histogram: exact below 16 µs, then 16 buckets per power of two
/// (at most 1/16 ≈ 6 % relative error).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Count per bucket.
    counts: Vec<u64>,
    /// Samples recorded.
    total: u64,
    /// Largest sample.
    max: u64,
}

/// Sub-buckets per power of two (log2).
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: `SUB` exact ones, then `SUB` per power of two from `2^SUB_BITS` to `2^63`.
const BUCKETS: usize = 16 * (64 - 4 + 1);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    fn bucket(v: u64) -> usize {
        let b = if v < SUB {
            v
        } else {
            let e = 63 - v.leading_zeros(); // >= SUB_BITS
            let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
            (u64::from(e - SUB_BITS) + 1) * SUB + sub
        };
        usize::try_from(b).map_or(BUCKETS - 1, |b| b.min(BUCKETS - 1))
    }

    fn upper_bound(bucket: usize) -> u64 {
        let b = bucket as u64;
        if b < SUB {
            return b;
        }
        let shift = b / SUB - 1;
        let sub = b % SUB;
        let bound = (u128::from(SUB + sub + 1) << shift) - 1;
        u64::try_from(bound).unwrap_or(u64::MAX)
    }

    /// Record one sample.
    pub fn record(&mut self, us: u64) {
        let b = Self::bucket(us);
        if let Some(c) = self.counts.get_mut(b) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which `q` (0.0..=1.0) of the samples lie (bucket upper bound,
    /// capped at the maximum); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// p50, p99 and max.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            max: self.max,
        }
    }
}

/// Counters of a running or finished workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Reads and writes issued (verify reads not counted).
    pub issued: u64,
    /// I/Os completed, verify reads included.
    pub completed: u64,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Verify reads completed.
    pub verifies: u64,
    /// Completions that reported failure.
    pub errors: u64,
    /// Verify reads whose data differed from what was written.
    pub verify_failures: u64,
    /// Bytes read by successful reads and verifies.
    pub bytes_read: u64,
    /// Bytes written by successful writes.
    pub bytes_written: u64,
    /// Latency over all completions.
    pub latency_us: LatencySummary,
    /// Completions per second from `start` to the last completion.
    pub iops: f64,
}

/// An I/O in flight.
#[derive(Debug, Clone)]
struct Outstanding {
    kind: IoKind,
    lba: u64,
    blocks: u32,
    issued_at: Duration,
    /// For a write: its data. For a verify: the data of the write it checks.
    data: Option<Bytes>,
    /// For a verify: the write checked. For a write: blocks (relative) that a
    /// concurrent write also touched at issue, which verify must not compare.
    write_id: u64,
    contested: Vec<bool>,
}

/// The workload engine.
///
/// Call order: [`new`](Self::new), [`start`](Self::start), then loop: drain
/// [`poll_io`](Self::poll_io) (it returns `None` once `qd` I/Os are outstanding or the
/// limit is reached), send each I/O, and call [`complete`](Self::complete) with its
/// result; stop when [`is_done`](Self::is_done).
///
/// The `n`-th read or write (kind, offset, data) depends only on the seed and `n`.
/// With `verify`, every acknowledged write is read back before new I/Os are issued
/// (verify reads count against `qd` and are issued even past a duration limit); only
/// blocks that no other write touched concurrently or since are compared.
#[derive(Debug, Clone)]
pub struct Workload {
    spec: WorkloadSpec,
    /// LU block size.
    lu_block_bytes: u32,
    /// `[start, end)` of the range.
    range: (u64, u64),
    /// Blocks per I/O.
    io_blocks: u64,
    rng: StdRng,
    /// Next sequential offset.
    cursor: u64,
    next_id: u64,
    started_at: Option<Duration>,
    /// A `poll_io` saw the duration limit's deadline pass.
    deadline_passed: bool,
    last_completion: Option<Duration>,
    outstanding: BTreeMap<u64, Outstanding>,
    /// Acknowledged writes waiting for their verify read: id → (lba, blocks, data, contested).
    verify_queue: VecDeque<(u64, u64, u32, Bytes, Vec<bool>)>,
    /// Per LU block, the id of the last write issued to it (only with `verify`).
    generation: BTreeMap<u64, u64>,
    progress: Progress,
    latency: LatencyHistogram,
    /// Messages of the first verify failures (at most [`MAX_MESSAGES`]).
    failures: Vec<String>,
}

/// Verify-failure messages kept.
const MAX_MESSAGES: usize = 64;

impl Workload {
    /// An engine for `spec` on a device of `device_blocks` blocks of `lu_block_bytes`.
    pub fn new(
        spec: WorkloadSpec,
        device_blocks: u64,
        lu_block_bytes: u32,
    ) -> Result<Self, WorkloadError> {
        spec.validate(device_blocks, lu_block_bytes)?;
        let range = spec.lba_range.unwrap_or((0, device_blocks));
        let io_blocks = u64::from(spec.block_bytes / lu_block_bytes);
        let rng = StdRng::seed_from_u64(spec.seed);
        Ok(Self {
            lu_block_bytes,
            range,
            io_blocks,
            rng,
            cursor: range.0,
            next_id: 0,
            started_at: None,
            deadline_passed: false,
            last_completion: None,
            outstanding: BTreeMap::new(),
            verify_queue: VecDeque::new(),
            generation: BTreeMap::new(),
            progress: Progress::default(),
            latency: LatencyHistogram::default(),
            failures: Vec::new(),
            spec,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// Begin at `now` (a duration limit counts from here). A second call does nothing.
    pub fn start(&mut self, now: Duration) {
        self.started_at.get_or_insert(now);
    }

    /// I/Os outstanding.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Messages describing the first verify failures.
    pub fn verify_failure_messages(&self) -> &[String] {
        &self.failures
    }

    /// The latency histogram over all completions.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    fn may_issue_new(&self, now: Duration) -> bool {
        match (self.spec.limit, self.started_at) {
            (_, None) => false,
            (Limit::Count(n), Some(_)) => self.progress.issued < n,
            (Limit::Duration(d), Some(t0)) => now < t0.saturating_add(d),
        }
    }

    /// The next I/O to send, if the queue depth and the limit allow one.
    pub fn poll_io(&mut self, now: Duration) -> Option<PlannedIo> {
        if let (Limit::Duration(d), Some(t0)) = (self.spec.limit, self.started_at)
            && now >= t0.saturating_add(d)
        {
            self.deadline_passed = true;
        }
        if self.started_at.is_none() || self.outstanding.len() >= self.spec.qd as usize {
            return None;
        }
        if let Some((write_id, lba, blocks, data, contested)) = self.verify_queue.pop_front() {
            let id = self.take_id();
            self.outstanding.insert(
                id,
                Outstanding {
                    kind: IoKind::Verify,
                    lba,
                    blocks,
                    issued_at: now,
                    data: Some(data),
                    write_id,
                    contested,
                },
            );
            return Some(PlannedIo {
                id,
                kind: IoKind::Verify,
                lba,
                blocks,
                data: None,
            });
        }
        if !self.may_issue_new(now) {
            return None;
        }
        let kind = match self.spec.mix {
            Mix::Read => IoKind::Read,
            Mix::Write => IoKind::Write,
            Mix::Mixed { read_percent } => {
                if self.rng.random_range(0..100u8) < read_percent {
                    IoKind::Read
                } else {
                    IoKind::Write
                }
            }
        };
        let lba = self.next_lba();
        let blocks = u32::try_from(self.io_blocks).unwrap_or(u32::MAX);
        let id = self.take_id();
        self.progress.issued += 1;
        let (data, contested) = if kind == IoKind::Write {
            let contested = if self.spec.verify {
                self.note_write(id, lba, blocks)
            } else {
                Vec::new()
            };
            (Some(self.write_data(id)), contested)
        } else {
            (None, Vec::new())
        };
        self.outstanding.insert(
            id,
            Outstanding {
                kind,
                lba,
                blocks,
                issued_at: now,
                data: data.clone(),
                write_id: id,
                contested,
            },
        );
        Some(PlannedIo {
            id,
            kind,
            lba,
            blocks,
            data,
        })
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn next_lba(&mut self) -> u64 {
        let (start, end) = self.range;
        match self.spec.pattern {
            Pattern::Sequential => {
                if self.cursor + self.io_blocks > end {
                    self.cursor = start;
                }
                let lba = self.cursor;
                self.cursor += self.io_blocks;
                lba
            }
            Pattern::Random => {
                let slots = ((end - start) / self.io_blocks).max(1);
                start + self.rng.random_range(0..slots) * self.io_blocks
            }
        }
    }

    /// Mark write `id` as the latest to its blocks; return which of them an
    /// outstanding write also touches.
    fn note_write(&mut self, id: u64, lba: u64, blocks: u32) -> Vec<bool> {
        let mut contested = vec![false; blocks as usize];
        for o in self
            .outstanding
            .values()
            .filter(|o| o.kind == IoKind::Write)
        {
            let lo = o.lba.max(lba);
            let hi = (o.lba + u64::from(o.blocks)).min(lba + u64::from(blocks));
            for b in lo..hi {
                if let Some(c) = usize::try_from(b - lba)
                    .ok()
                    .and_then(|i| contested.get_mut(i))
                {
                    *c = true;
                }
            }
        }
        for b in lba..lba + u64::from(blocks) {
            self.generation.insert(b, id);
        }
        contested
    }

    /// Deterministic write data: little-endian u64 words `mix(seed, id, word index)`.
    fn write_data(&self, id: u64) -> Bytes {
        let len = self.spec.block_bytes as usize;
        let base = splitmix(self.spec.seed ^ splitmix(id));
        let mut buf = BytesMut::with_capacity(len);
        let mut i = 0u64;
        while buf.len() + 8 <= len {
            buf.put_u64_le(splitmix(base.wrapping_add(i)));
            i += 1;
        }
        let tail = splitmix(base.wrapping_add(i)).to_le_bytes();
        let rest = len - buf.len();
        buf.put_slice(&tail[..rest]);
        buf.freeze()
    }

    /// Report the end of I/O `id` at `now`.
    pub fn complete(
        &mut self,
        id: u64,
        result: IoDone,
        now: Duration,
    ) -> Result<(), WorkloadError> {
        let o = self
            .outstanding
            .remove(&id)
            .ok_or(WorkloadError::UnknownIo { id })?;
        let latency = now.saturating_sub(o.issued_at);
        self.latency
            .record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        self.last_completion = Some(self.last_completion.map_or(now, |t| t.max(now)));
        let p = &mut self.progress;
        p.completed += 1;
        match o.kind {
            IoKind::Read => p.reads += 1,
            IoKind::Write => p.writes += 1,
            IoKind::Verify => p.verifies += 1,
        }
        if !result.ok {
            p.errors += 1;
            return Ok(());
        }
        let bytes = u64::from(o.blocks) * u64::from(self.lu_block_bytes);
        match o.kind {
            IoKind::Read => p.bytes_read += bytes,
            IoKind::Write => {
                p.bytes_written += bytes;
                if self.spec.verify
                    && let Some(data) = o.data
                {
                    self.verify_queue
                        .push_back((id, o.lba, o.blocks, data, o.contested));
                }
            }
            IoKind::Verify => {
                p.bytes_read += bytes;
                self.check_verify(&o, result.data.as_ref());
            }
        }
        Ok(())
    }

    /// Compare a verify read with the write it checks, on the blocks nothing else
    /// touched concurrently or since.
    fn check_verify(&mut self, o: &Outstanding, read: Option<&Bytes>) {
        let Some(written) = &o.data else { return };
        let bb = self.lu_block_bytes as usize;
        let mut bad = Vec::new();
        for i in 0..o.blocks as usize {
            let lba = o.lba + i as u64;
            let mine = self.generation.get(&lba) == Some(&o.write_id);
            let contested = o.contested.get(i).copied().unwrap_or(false);
            if !mine || contested {
                continue;
            }
            let range = i * bb..(i + 1) * bb;
            let got = read.and_then(|r| r.get(range.clone()));
            if got != written.get(range) {
                bad.push(lba);
            }
        }
        if !bad.is_empty() {
            self.progress.verify_failures += 1;
            if self.failures.len() < MAX_MESSAGES {
                let first = bad[0];
                self.failures.push(format!(
                    "{}: write {} verify: {} of {} blocks differ, first at lba {first}",
                    self.spec.name,
                    o.write_id,
                    bad.len(),
                    o.blocks
                ));
            }
        }
    }

    /// Whether the limit is reached and nothing is outstanding or waiting for verify.
    /// With a duration limit, the deadline counts as reached once a
    /// [`poll_io`](Self::poll_io) has been called at or after it.
    pub fn is_done(&self) -> bool {
        let limit_reached = match (self.spec.limit, self.started_at) {
            (_, None) => false,
            (Limit::Count(n), Some(_)) => self.progress.issued >= n,
            // `poll_io` notes when it sees the deadline pass.
            (Limit::Duration(_), Some(_)) => self.deadline_passed,
        };
        limit_reached && self.outstanding.is_empty() && self.verify_queue.is_empty()
    }

    /// Counters so far.
    pub fn progress(&self) -> Progress {
        let mut p = self.progress.clone();
        p.latency_us = self.latency.summary();
        if let (Some(t0), Some(t1)) = (self.started_at, self.last_completion) {
            let secs = t1.saturating_sub(t0).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            if secs > 0.0 {
                p.iops = p.completed as f64 / secs;
            }
        }
        p
    }
}

/// SplitMix64 finalizer: a cheap, well-mixed 64-bit hash.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LU: u32 = 512;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            name: "w1".into(),
            block_bytes: 4096,
            qd: 4,
            ..WorkloadSpec::default()
        }
    }

    /// An in-memory device that completes every I/O `latency_us` after it is sent, in
    /// send order; `corrupt` flips a byte of every verify read.
    struct Dev {
        blocks: BTreeMap<u64, Vec<u8>>,
        corrupt: bool,
    }

    impl Dev {
        fn new() -> Self {
            Self {
                blocks: BTreeMap::new(),
                corrupt: false,
            }
        }

        fn exec(&mut self, io: &PlannedIo) -> IoDone {
            let bb = LU as usize;
            match io.kind {
                IoKind::Write => {
                    let data = io.data.as_ref().expect("write has data");
                    for i in 0..io.blocks as usize {
                        self.blocks
                            .insert(io.lba + i as u64, data[i * bb..(i + 1) * bb].to_vec());
                    }
                    IoDone {
                        ok: true,
                        ..IoDone::default()
                    }
                }
                IoKind::Read | IoKind::Verify => {
                    let mut out = Vec::new();
                    for i in 0..u64::from(io.blocks) {
                        out.extend(
                            self.blocks
                                .get(&(io.lba + i))
                                .cloned()
                                .unwrap_or(vec![0; bb]),
                        );
                    }
                    if self.corrupt && io.kind == IoKind::Verify {
                        out[7] ^= 0x40;
                    }
                    IoDone {
                        ok: true,
                        data: Some(Bytes::from(out)),
                        error: None,
                    }
                }
            }
        }
    }

    /// Run to completion; returns every planned I/O and the most seen outstanding.
    fn run(w: &mut Workload, dev: &mut Dev, latency_us: u64) -> (Vec<PlannedIo>, usize, Duration) {
        let mut now = us(0);
        w.start(now);
        let mut inflight: VecDeque<(Duration, PlannedIo)> = VecDeque::new();
        let mut all = Vec::new();
        let mut max_out = 0;
        for _ in 0..1_000_000 {
            while let Some(io) = w.poll_io(now) {
                all.push(io.clone());
                inflight.push_back((now + us(latency_us), io));
            }
            max_out = max_out.max(w.outstanding());
            if w.is_done() {
                return (all, max_out, now);
            }
            let (due, io) = inflight
                .pop_front()
                .expect("work outstanding when not done");
            now = now.max(due);
            let done = dev.exec(&io);
            w.complete(io.id, done, now).expect("known id");
        }
        panic!("workload did not finish");
    }

    #[test]
    fn count_limit_runs_exactly_n_within_qd() {
        let mut w = Workload::new(
            WorkloadSpec {
                limit: Limit::Count(100),
                ..spec()
            },
            65536,
            LU,
        )
        .unwrap();
        let (ios, max_out, _) = run(&mut w, &mut Dev::new(), 50);
        assert_eq!(ios.len(), 100);
        assert_eq!(max_out, 4);
        let p = w.progress();
        assert_eq!(
            (p.issued, p.completed, p.writes, p.errors),
            (100, 100, 100, 0)
        );
        assert_eq!(p.bytes_written, 100 * 4096);
        assert_eq!(
            p.latency_us,
            LatencySummary {
                p50: 50,
                p99: 50,
                max: 50
            }
        );
        // 100 I/Os at qd 4, 50 µs each: 25 rounds = 1250 µs → 80 000 IOPS.
        assert!((p.iops - 80_000.0).abs() < 1.0, "{}", p.iops);
        assert!(w.poll_io(us(10_000)).is_none());
    }

    #[test]
    fn duration_limit_stops_issuing_at_deadline() {
        let mut w = Workload::new(
            WorkloadSpec {
                limit: Limit::Duration(Duration::from_millis(1)),
                qd: 2,
                ..spec()
            },
            65536,
            LU,
        )
        .unwrap();
        let (ios, _, end) = run(&mut w, &mut Dev::new(), 30);
        // Issued at 0, 30, ..., 990 µs, two at a time: 34 rounds.
        assert_eq!(ios.len(), 68);
        assert!(end >= us(1000));
        assert!(w.is_done());
    }

    #[test]
    fn sequential_wraps_around_the_range() {
        let s = WorkloadSpec {
            pattern: Pattern::Sequential,
            lba_range: Some((100, 140)),
            limit: Limit::Count(12),
            qd: 1,
            ..spec()
        };
        let mut w = Workload::new(s, 65536, LU).unwrap();
        let (ios, _, _) = run(&mut w, &mut Dev::new(), 1);
        let lbas: Vec<u64> = ios.iter().map(|io| io.lba).collect();
        // 40 blocks hold 5 I/Os of 8 blocks; the sixth starts over.
        assert_eq!(
            lbas,
            [100, 108, 116, 124, 132, 100, 108, 116, 124, 132, 100, 108]
        );
        assert!(ios.iter().all(|io| io.blocks == 8));
    }

    #[test]
    fn random_stays_aligned_inside_the_range() {
        let s = WorkloadSpec {
            lba_range: Some((8, 72)),
            limit: Limit::Count(500),
            ..spec()
        };
        let mut w = Workload::new(s, 65536, LU).unwrap();
        let (ios, _, _) = run(&mut w, &mut Dev::new(), 5);
        assert!(
            ios.iter()
                .all(|io| io.lba >= 8 && io.lba + 8 <= 72 && (io.lba - 8) % 8 == 0)
        );
        let distinct: std::collections::BTreeSet<u64> = ios.iter().map(|io| io.lba).collect();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn mixed_ratio_roughly_holds() {
        let s = WorkloadSpec {
            mix: Mix::Mixed { read_percent: 70 },
            limit: Limit::Count(2000),
            seed: 7,
            ..spec()
        };
        let mut w = Workload::new(s, 65536, LU).unwrap();
        run(&mut w, &mut Dev::new(), 10);
        let p = w.progress();
        assert_eq!(p.reads + p.writes, 2000);
        assert!((1300..1500).contains(&p.reads), "reads {}", p.reads);
        assert_eq!(p.bytes_read, p.reads * 4096);
    }

    #[test]
    fn same_seed_same_sequence() {
        let go = |seed| {
            let s = WorkloadSpec {
                mix: Mix::Mixed { read_percent: 50 },
                limit: Limit::Count(200),
                seed,
                ..spec()
            };
            let mut w = Workload::new(s, 65536, LU).unwrap();
            run(&mut w, &mut Dev::new(), 10).0
        };
        assert_eq!(go(1), go(1));
        assert_ne!(go(1), go(2));
        // Write data is deterministic, distinct per I/O, and exactly block_bytes long.
        let ios = go(3);
        let writes: Vec<&Bytes> = ios.iter().filter_map(|io| io.data.as_ref()).collect();
        assert!(writes.len() > 50);
        assert!(writes.iter().all(|d| d.len() == 4096));
        assert_ne!(writes[0], writes[1]);
    }

    #[test]
    fn verify_reads_back_and_catches_corruption() {
        let s = WorkloadSpec {
            verify: true,
            limit: Limit::Count(50),
            lba_range: Some((0, 64)),
            ..spec()
        };
        let mut w = Workload::new(s.clone(), 65536, LU).unwrap();
        let (ios, max_out, _) = run(&mut w, &mut Dev::new(), 20);
        let p = w.progress();
        assert!(max_out <= 4);
        assert_eq!(p.issued, 50);
        assert_eq!(p.verifies, 50);
        assert_eq!(
            ios.iter().filter(|io| io.kind == IoKind::Verify).count(),
            50
        );
        assert_eq!(p.verify_failures, 0, "{:?}", w.verify_failure_messages());

        let mut w = Workload::new(WorkloadSpec { qd: 1, ..s }, 65536, LU).unwrap();
        let mut dev = Dev::new();
        dev.corrupt = true;
        run(&mut w, &mut dev, 20);
        let p = w.progress();
        assert_eq!(p.verify_failures, 50);
        assert!(
            w.verify_failure_messages()[0].starts_with("w1: write 0 verify: 1 of 8 blocks differ")
        );
    }

    #[test]
    fn verify_skips_blocks_overwritten_since() {
        // Two writes to the same 8 blocks at qd 2: both contested, so even a device
        // that keeps the older data (legal for concurrent writes) passes verify.
        let s = WorkloadSpec {
            verify: true,
            qd: 2,
            limit: Limit::Count(2),
            lba_range: Some((0, 8)),
            ..spec()
        };
        let mut w = Workload::new(s, 65536, LU).unwrap();
        w.start(us(0));
        let a = w.poll_io(us(0)).unwrap();
        let b = w.poll_io(us(0)).unwrap();
        assert_eq!((a.lba, b.lba), (0, 0));
        let mut dev = Dev::new();
        dev.exec(&b);
        dev.exec(&a); // a lands last
        w.complete(
            a.id,
            IoDone {
                ok: true,
                ..IoDone::default()
            },
            us(5),
        )
        .unwrap();
        w.complete(
            b.id,
            IoDone {
                ok: true,
                ..IoDone::default()
            },
            us(6),
        )
        .unwrap();
        while let Some(v) = w.poll_io(us(7)) {
            let done = dev.exec(&v);
            w.complete(v.id, done, us(8)).unwrap();
        }
        assert!(w.is_done());
        assert_eq!(w.progress().verifies, 2);
        assert_eq!(w.progress().verify_failures, 0);
        assert_eq!(
            w.complete(99, IoDone::default(), us(9)),
            Err(WorkloadError::UnknownIo { id: 99 })
        );
    }

    #[test]
    fn errors_are_counted() {
        let mut w = Workload::new(
            WorkloadSpec {
                limit: Limit::Count(3),
                qd: 1,
                verify: true,
                ..spec()
            },
            65536,
            LU,
        )
        .unwrap();
        w.start(us(0));
        while let Some(io) = w.poll_io(us(1)) {
            w.complete(
                io.id,
                IoDone {
                    ok: false,
                    data: None,
                    error: Some("CHECK CONDITION".into()),
                },
                us(2),
            )
            .unwrap();
        }
        let p = w.progress();
        assert_eq!(
            (p.errors, p.writes, p.bytes_written, p.verifies),
            (3, 3, 0, 0)
        );
        assert!(w.is_done());
    }

    #[test]
    fn validation_names_the_field() {
        let check = |s: WorkloadSpec| s.validate(1024, LU).unwrap_err();
        let e = check(WorkloadSpec {
            block_bytes: 1000,
            ..spec()
        });
        assert_eq!(e.field(), "block_bytes");
        assert!(e.to_string().starts_with("block_bytes: 1000"), "{e}");
        let e = check(WorkloadSpec {
            block_bytes: 0,
            ..spec()
        });
        assert_eq!(e.field(), "block_bytes");
        let e = check(WorkloadSpec { qd: 0, ..spec() });
        assert_eq!(e, WorkloadError::QueueDepthZero);
        assert!(e.to_string().starts_with("qd:"));
        let e = check(WorkloadSpec {
            lba_range: Some((0, 2048)),
            ..spec()
        });
        assert_eq!(
            e,
            WorkloadError::RangePastEnd {
                end: 2048,
                device_blocks: 1024
            }
        );
        assert!(e.to_string().starts_with("lba_range:"));
        assert_eq!(
            check(WorkloadSpec {
                lba_range: Some((5, 5)),
                ..spec()
            })
            .field(),
            "lba_range"
        );
        assert_eq!(
            check(WorkloadSpec {
                lba_range: Some((0, 4)),
                ..spec()
            })
            .field(),
            "block_bytes"
        );
        assert_eq!(
            check(WorkloadSpec {
                mix: Mix::Mixed { read_percent: 101 },
                ..spec()
            })
            .field(),
            "mix.read_percent"
        );
        assert!(spec().validate(1024, LU).is_ok());
        assert!(Workload::new(WorkloadSpec { qd: 0, ..spec() }, 1024, LU).is_err());
    }

    #[test]
    fn spec_json_round_trip_and_unknown_fields() {
        let j = r#"{"name":"w1","pattern":"sequential","mix":{"mixed":{"read_percent":30}},
            "block_bytes":8192,"qd":8,"limit":{"duration_us":200000},"verify":true,"seed":9}"#;
        let s: WorkloadSpec = serde_json::from_str(j).unwrap();
        assert_eq!(s.limit, Limit::Duration(Duration::from_millis(200)));
        assert_eq!(s.mix, Mix::Mixed { read_percent: 30 });
        assert_eq!(s.lba_range, None);
        let back: WorkloadSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let c: WorkloadSpec = serde_json::from_str(
            r#"{"name":"r","mix":"read","block_bytes":512,"qd":1,"limit":{"count":5}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.mix, c.limit, c.pattern),
            (Mix::Read, Limit::Count(5), Pattern::Random)
        );
        let bad = serde_json::from_str::<WorkloadSpec>(
            r#"{"name":"r","block_bytes":512,"qd":1,"limit":{"count":5},"depth":3}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("depth"));
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.summary(), LatencySummary::default());
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.max, 1000);
        assert!((500..=532).contains(&s.p50), "{s:?}");
        assert!((990..=1000).contains(&s.p99), "{s:?}");
        for v in [0, 15, 16, 17, 1 << 20, u64::MAX] {
            let b = LatencyHistogram::bucket(v);
            assert!(LatencyHistogram::upper_bound(b) >= v);
            assert!(b < h.counts.len());
        }
    }
}
