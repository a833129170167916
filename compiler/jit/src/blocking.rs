//! Temporal blocking of fused Euler steps: several time steps per pass over the grid, while a band
//! of rows sits in cache.
//!
//! A step of an [`crate::EulerStepper`] is a list of box kernels (Dirichlet faces, ghost layers, the
//! update sweep, Dirichlet faces on the new state). Every kernel writes the rows `i + shift` of its
//! output buffer for the rows `i` of its region along axis 0, and reads rows `i + o` of its inputs.
//! Unrolling `s` steps gives a sequence of kernels. Between steps the current and next buffers of
//! every field trade places, so the unrolled kernels refer to physical buffers.
//!
//! The blocked schedule runs every kernel of the sequence row band by row band: a wavefront `W`
//! moves along axis 0, and kernel `q` runs on the rows it has not run yet below `W − d[q]`. The
//! delays `d` make this order equal to the plain one. For kernels `a < b` of the sequence that touch
//! a common row of a buffer one of them writes (a reads what b writes, b reads what a writes, or
//! both write), `d[b] ≥ d[a] + |o|` for every row offset `o` (read row minus written row) of such
//! an access; and `d[q] ≥` the largest row offset of kernel `q`. Every point is then computed by
//! the same machine code from the same inputs as in the plain schedule, so the results are
//! identical bit for bit.
//!
//! Threads take slabs of rows. In a slab `[b, e)`, kernel `q` only runs on rows `[b + d[q], e −
//! d[q])`, so no slab reads or writes a row of another; the rows `[b − d[q], b + d[q])` around each
//! inner slab edge `b` are left over, and the calling thread runs them afterwards, kernel by kernel
//! in sequence order. The same inequalities make that order correct.
//!
//! A plan is blocked only when every operation of the step is a box kernel of rank 2 or more, every
//! written buffer has the layout of the evolved fields, every kernel reads rows within
//! [`MAX_REACH`] of the rows it writes, and a kernel that reads its own output at another row
//! writes a single row.

use crate::codegen::BufferLayout;
use crate::kexpr::Kexpr;
use crate::plan::{Instant, Op, Plan};
use std::path::Path;
use std::sync::OnceLock;

/// The largest distance along axis 0 between the rows a blocked kernel writes and reads.
pub const MAX_REACH: i64 = 16;

/// The maximum number of steps in one pass.
pub const MAX_BLOCK_STEPS: usize = 32;

/// The cache a band of rows should fit, in bytes, where the size of the last-level cache is
/// unknown.
pub const FALLBACK_CACHE_BYTES: usize = 1 << 20;

/// Returns the cache a band of rows should fit, in bytes: a quarter of the last-level CPU cache that
/// Linux lists for CPU 0 under `/sys/devices/system/cpu/cpu0/cache`, at least
/// [`FALLBACK_CACHE_BYTES`], and that where the list is missing.
/// NOTE: the quarter leaves room for the bands of two threads in a shared cache. It was measured on
/// one machine only (32 MiB third-level cache, where the 3-D order-2 step ran fastest with 8 to 12
/// steps per pass).
pub fn default_cache_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        largest_cache_bytes(Path::new("/sys/devices/system/cpu/cpu0/cache"))
            .map_or(FALLBACK_CACHE_BYTES, |bytes| {
                (bytes / 4).max(FALLBACK_CACHE_BYTES)
            })
    })
}

/// Returns the size of the highest-level cache listed in a sysfs cache folder (`index0`,
/// `index1`, … each with the files `level` and `size`).
fn largest_cache_bytes(folder: &Path) -> Option<usize> {
    let mut largest: Option<(u32, usize)> = None;
    for entry in std::fs::read_dir(folder).ok()?.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let Some(level) = read("level").and_then(|t| t.trim().parse::<u32>().ok()) else {
            continue;
        };
        let Some(bytes) = read("size").and_then(|t| parse_cache_size(&t)) else {
            continue;
        };
        if largest.is_none_or(|(l, b)| (level, bytes) > (l, b)) {
            largest = Some((level, bytes));
        }
    }
    largest.map(|(_, bytes)| bytes)
}

/// Parses a sysfs cache size such as `32768K`, `1M` or `512`, in bytes.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1 << 20),
            None => (text, 1),
        },
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// One kernel of a step, with the rows it writes and reads.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockKernel {
    pub kernel: usize,
    pub instant: Instant,
    /// The rows the kernel's region covers in its own frame, `[first, last)`.
    pub first: i64,
    pub last: i64,
    /// The buffer row of frame row 0.
    pub shift: i64,
    pub reach: i64,
    /// The bits of the written buffers it writes: its output, then those of its row prologue,
    /// which writes the same rows.
    writes: Vec<usize>,
    /// Per written buffer it reads (by bit), the row offsets of its loads relative to the row
    /// it writes.
    reads: Vec<(usize, Vec<i64>)>,
}

impl BlockKernel {
    /// Returns the buffer rows the kernel writes, `[first, last)`.
    fn rows(&self) -> (i64, i64) {
        (self.first + self.shift, self.last + self.shift)
    }
}

/// The blocked schedule of a step plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocking {
    pub kernels: Vec<BlockKernel>,
    /// The current and next buffers of every evolved field.
    pub swaps: Vec<(usize, usize)>,
    /// The rows of the evolved buffers along axis 0.
    pub rows: i64,
    /// The delays of the unrolled sequence, for at least `steps_per_block` steps.
    pub delays: Vec<i64>,
    /// Steps per pass.
    pub steps_per_block: usize,
    /// Rows the wavefront advances at a time.
    pub band: i64,
}

/// Returns the plan's blocked schedule, or why it has none. The wavefront advances at least
/// `least_band` rows at a time, so that kernels that compute blocks of rows of axis 0 get whole
/// blocks.
pub fn analyze(
    plan: &Plan,
    element_bytes: usize,
    cache_bytes: usize,
    steps: Option<usize>,
    least_band: usize,
) -> Result<Blocking, String> {
    let Some(first) = plan.updates.first() else {
        return Err("the plan evolves no field".into());
    };
    let layout: &BufferLayout = &plan.layouts[first.current];
    if layout.extents.len() < 2 {
        return Err("blocking needs a grid of two or more axes".into());
    }
    let mut written: Vec<usize> = Vec::new();
    for update in &plan.updates {
        for buffer in [update.current, update.next] {
            if plan.layouts[buffer].extents != layout.extents {
                return Err("the evolved fields have different layouts".into());
            }
            written.push(buffer);
        }
    }
    if written.len() > 64 {
        return Err("too many evolved fields".into());
    }
    let mut kernels = Vec::new();
    for op in &plan.ops {
        let Op::Kernel { kernel, instant } = op else {
            return Err("the step has an operation other than a box kernel".into());
        };
        let spec = &plan.kernels[*kernel];
        if spec.rank() != layout.extents.len() {
            return Err(format!("kernel `{}` has another rank", spec.name));
        }
        let Some(out) = written.iter().position(|b| *b == spec.output) else {
            return Err(format!(
                "kernel `{}` writes a buffer other than a state",
                spec.name
            ));
        };
        let mut writes = vec![out];
        for store in &spec.row_prologue {
            let Some(bit) = written.iter().position(|b| *b == store.buffer) else {
                return Err(format!(
                    "the row prologue of kernel `{}` writes a buffer other than a state",
                    spec.name
                ));
            };
            if store.offset[0] != spec.output_shift[0] {
                return Err(format!(
                    "the row prologue of kernel `{}` writes other rows than the kernel",
                    spec.name
                ));
            }
            if !writes.contains(&bit) {
                writes.push(bit);
            }
        }
        let shift = spec.output_shift[0] as i64;
        let (first, last) = (spec.region[0].0 as i64, spec.region[0].1 as i64);
        let mut reach = 0i64;
        let mut reads: Vec<(usize, Vec<i64>)> = Vec::new();
        let mut own_other_row = false;
        for expr in spec.exprs() {
            expr.walk(&mut |e| {
                if let Kexpr::Load { buffer, offset, .. } = e {
                    if let Some(bit) = written.iter().position(|b| b == buffer) {
                        let distance = offset[0] as i64 - shift;
                        reach = reach.max(distance.abs());
                        own_other_row |= bit == out && distance != 0;
                        match reads.iter_mut().find(|(b, _)| *b == bit) {
                            Some((_, offsets)) if offsets.contains(&distance) => {}
                            Some((_, offsets)) => offsets.push(distance),
                            None => reads.push((bit, vec![distance])),
                        }
                    }
                }
            });
        }
        if reach > MAX_REACH {
            return Err(format!(
                "kernel `{}` reads rows {reach} away from those it writes",
                spec.name
            ));
        }
        if own_other_row && last - first != 1 {
            return Err(format!(
                "kernel `{}` reads other rows of the buffer it writes",
                spec.name
            ));
        }
        kernels.push(BlockKernel {
            kernel: *kernel,
            instant: *instant,
            first,
            last,
            shift,
            reach,
            writes,
            reads,
        });
    }
    let swaps: Vec<(usize, usize)> = plan.updates.iter().map(|u| (u.current, u.next)).collect();
    let row_elements: usize = layout.channels * layout.extents[1..].iter().product::<usize>();
    Ok(Blocking {
        kernels,
        swaps,
        rows: layout.extents[0] as i64,
        delays: Vec::new(),
        steps_per_block: steps.unwrap_or(0).clamp(0, MAX_BLOCK_STEPS),
        band: 0,
    }
    .sized(
        row_elements * element_bytes * written.len(),
        cache_bytes,
        least_band,
    ))
}

/// Maps a buffer bit of step 0 to the bit of step `k`: bits come in pairs (current, next) per
/// field, and odd steps trade the two.
fn physical(bit: usize, k: usize) -> usize {
    if k.is_multiple_of(2) {
        bit
    } else {
        bit ^ 1
    }
}

/// Returns true when the rows `[a.0 + shift, a.1 + shift)` meet the rows `[b.0, b.1)`.
fn overlap(a: (i64, i64), shift: i64, b: (i64, i64)) -> bool {
    a.0 + shift < b.1 && b.0 < a.1 + shift
}

/// Returns the smallest `d[b] − d[a]` that keeps kernel `a` (of step `ka`) before kernel `b` (of
/// step `kb`) on every row they both touch, or `None` when they touch no common row of a buffer
/// that one of them writes. The gaps are symmetric in the offsets because slabs run the rows near
/// their lower edge after those above.
fn gap(a: &BlockKernel, ka: usize, b: &BlockKernel, kb: usize) -> Option<i64> {
    let write_a: Vec<usize> = a.writes.iter().map(|w| physical(*w, ka)).collect();
    let write_b: Vec<usize> = b.writes.iter().map(|w| physical(*w, kb)).collect();
    let mut gap = None;
    let mut widen = |g: i64| gap = Some(gap.map_or(g, |old: i64| old.max(g)));
    // b reads what a wrote.
    for (bit, offsets) in &b.reads {
        if write_a.contains(&physical(*bit, kb)) {
            for o in offsets {
                if overlap(b.rows(), *o, a.rows()) {
                    widen(o.abs());
                }
            }
        }
    }
    // b overwrites what a read.
    for (bit, offsets) in &a.reads {
        if write_b.contains(&physical(*bit, ka)) {
            for o in offsets {
                if overlap(a.rows(), *o, b.rows()) {
                    widen(o.abs());
                }
            }
        }
    }
    // Both write the same rows.
    if write_a.iter().any(|w| write_b.contains(w)) && overlap(a.rows(), 0, b.rows()) {
        widen(0);
    }
    gap
}

/// Extends the delays `d` of the unrolled sequence to `steps` steps. A delay depends only on the
/// kernels before it, so a shorter sequence has the same delays as the start of a longer one.
fn extend_delays(kernels: &[BlockKernel], d: &mut Vec<i64>, steps: usize) {
    let m = kernels.len();
    let n = m * steps;
    let start = d.len();
    d.resize(n.max(start), 0);
    for q in start..n {
        let b = &kernels[q % m];
        let mut delay = b.reach;
        for p in 0..q {
            if let Some(g) = gap(&kernels[p % m], p / m, b, q / m) {
                delay = delay.max(d[p] + g);
            }
        }
        d[q] = delay;
    }
}

impl Blocking {
    /// Picks the steps per pass and the band height so that the rows between the first and the
    /// last kernel of a pass fit `cache_bytes` (unless the steps were given).
    /// `row_bytes` is the size of one row of all written buffers together. The band spans 64 KiB
    /// of rows, at least `least_band` and at most 8 rows.
    fn sized(mut self, row_bytes: usize, cache_bytes: usize, least_band: usize) -> Self {
        let row_bytes = row_bytes.max(1);
        self.band = ((64 << 10) / row_bytes).clamp(least_band.clamp(1, 8), 8) as i64;
        if self.steps_per_block == 0 {
            // The span only grows with the steps, so the search stops at the first that does not
            // fit, and the delays are computed only that far.
            let mut best = 1;
            for s in 1..=MAX_BLOCK_STEPS {
                extend_delays(&self.kernels, &mut self.delays, s);
                let span = self.max_delay(s) + self.band + 2 * self.max_reach();
                if span as usize * row_bytes > cache_bytes {
                    break;
                }
                best = s;
            }
            self.steps_per_block = best;
        }
        extend_delays(&self.kernels, &mut self.delays, self.steps_per_block);
        self
    }

    fn max_reach(&self) -> i64 {
        self.kernels.iter().map(|k| k.reach).max().unwrap_or(0)
    }

    /// Returns the largest delay of `steps` unrolled steps.
    pub fn max_delay(&self, steps: usize) -> i64 {
        let n = (self.kernels.len() * steps).min(self.delays.len());
        self.delays[..n].iter().copied().max().unwrap_or(0)
    }

    /// Returns the number of slabs `threads` threads can take for passes of `steps` steps.
    pub fn slabs(&self, threads: usize, steps: usize) -> usize {
        let need = 2 * self.max_delay(steps) + self.band;
        let mut slabs = threads.max(1);
        while slabs > 1 && self.rows / (slabs as i64) < need {
            slabs -= 1;
        }
        slabs
    }
}

/// One pass of `steps` steps from time `t0`.
pub struct Runner<'a> {
    pub blocking: &'a Blocking,
    pub steps: usize,
    pub t0: f64,
    pub dt: f64,
}

impl Runner<'_> {
    /// Runs kernel `q` on the buffer rows `[from, to)` through `call(kernel, step, time, start,
    /// end)`, clipped to its region.
    pub fn run(
        &self,
        q: usize,
        from: i64,
        to: i64,
        call: &mut dyn FnMut(usize, usize, f64, i64, i64),
    ) {
        let m = self.blocking.kernels.len();
        let kernel = &self.blocking.kernels[q % m];
        let start = (from - kernel.shift).max(kernel.first);
        let end = (to - kernel.shift).min(kernel.last);
        if start >= end {
            return;
        }
        let k = q / m;
        let mut time = self.t0 + k as f64 * self.dt;
        if kernel.instant == Instant::Next {
            time += self.dt;
        }
        call(kernel.kernel, k, time, start, end);
    }

    /// Runs the wavefront over the slab `[b, e)`; `inner_low` and `inner_high` say whether the slab
    /// has a neighbour below and above.
    pub fn slab(
        &self,
        b: i64,
        e: i64,
        inner_low: bool,
        inner_high: bool,
        call: &mut dyn FnMut(usize, usize, f64, i64, i64),
    ) {
        let blocking = self.blocking;
        let n = blocking.kernels.len() * self.steps;
        let d = &blocking.delays[..n];
        let mut done: Vec<i64> = d
            .iter()
            .map(|d| if inner_low { b + d } else { i64::MIN / 4 })
            .collect();
        let upper: Vec<i64> = d
            .iter()
            .map(|d| if inner_high { e - d } else { i64::MAX / 4 })
            .collect();
        let max_delay = d.iter().copied().max().unwrap_or(0);
        let end = e + max_delay + blocking.band;
        let mut w = b;
        while w < end {
            w += blocking.band;
            for q in 0..n {
                let target = (w - d[q]).min(upper[q]);
                if target > done[q] {
                    self.run(q, done[q], target, call);
                    done[q] = target;
                }
            }
        }
    }

    /// Runs the rows left around the inner slab edges, kernel by kernel.
    pub fn seams(&self, edges: &[i64], call: &mut dyn FnMut(usize, usize, f64, i64, i64)) {
        let n = self.blocking.kernels.len() * self.steps;
        for q in 0..n {
            let d = self.blocking.delays[q];
            for edge in edges {
                self.run(q, edge - d, edge + d, call);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("large"), None);
        assert_eq!(parse_cache_size(""), None);
    }

    #[test]
    fn largest_cache_is_highest_level() {
        let folder = std::env::temp_dir().join(format!("npdec-cache-{}", std::process::id()));
        for (index, level, size) in [(0, "1", "32K"), (2, "2", "1024K"), (3, "3", "16384K")] {
            let entry = folder.join(format!("index{index}"));
            std::fs::create_dir_all(&entry).expect("a temporary folder");
            std::fs::write(entry.join("level"), format!("{level}\n")).expect("a file");
            std::fs::write(entry.join("size"), format!("{size}\n")).expect("a file");
        }
        let bytes = largest_cache_bytes(&folder);
        std::fs::remove_dir_all(&folder).expect("removed");
        assert_eq!(bytes, Some(16 << 20));
        assert_eq!(largest_cache_bytes(&folder), None);
    }
}
