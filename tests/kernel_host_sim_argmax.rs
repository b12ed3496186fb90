//! The argmax kernel executed on the host (tests/host_sim) over one block and several: rows that
//! start at any 4-byte offset and have any length (the vectorized middle, its unaligned head and
//! tail), ties within a block and across block boundaries, NaNs and infinities, blocks with empty
//! slices, and the feed of the next step (token, position advanced, ring slot). Every launch runs
//! twice in a row, blocks first to last and last to first, so that the last-block handshake is
//! taken by different blocks and must leave its ticket at 0 for the next launch.

mod host_cxx;
mod host_sim;

use host_sim::{f32_bytes, i32_bytes, Launch};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::argmax::ArgmaxKnobs;
use rocmforge::codegen::ops::ArgmaxContext;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::util::rng::Rng;

/// Slots of the I/O block's ring of results.
const RING: usize = 8;
/// Launches of each kernel in a row on the same buffers.
const RUNS: i32 = 2;

/// The kernel's rule: the lowest index of the largest value that is not NaN; 0 when all are NaN.
fn expected(row: &[f32]) -> i32 {
    let mut best: Option<usize> = None;
    for (i, &v) in row.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|b| v > row[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0) as i32
}

/// Block geometries: target and (threads, blocks); None takes the default for the row.
const GEOMETRIES: [(&str, Option<(u32, u32)>); 5] = [
    ("gfx1030", None),
    ("gfx1030", Some((32, 2))),
    ("gfx1030", Some((64, 3))),
    ("gfx1030", Some((32, 7))),
    ("gfx90a", Some((128, 5))),
];

struct Case {
    label: String,
    target: &'static str,
    knobs: Option<(u32, u32)>,
    /// Floats before the row in its buffer (which is 64-byte aligned).
    offset: usize,
    row: Vec<f32>,
}

impl Case {
    fn context(&self) -> ArgmaxContext {
        let ctx = ArgmaxContext::new(&Target::parse(self.target).unwrap(), self.row.len());
        match self.knobs {
            Some((threads, blocks)) => ctx.with_knobs(&ArgmaxKnobs { threads, blocks }),
            None => ctx,
        }
    }

    fn pos0(&self) -> i32 {
        40 + (self.row.len() % 7) as i32
    }

    /// Tokens each step ran: 1 to 4.
    fn advance(&self) -> i32 {
        1 + self.offset as i32
    }

    fn launch(&self, renderer: &Renderer) -> Launch {
        let ctx = self.context();
        ctx.validate().unwrap();
        let spec = KernelSpec::new(KernelKind::Argmax, &ctx, renderer).unwrap();
        let mut x = vec![0f32; self.offset];
        x.extend(&self.row);
        let (offset, n, ring, advance) = (self.offset, self.row.len(), RING, self.advance());
        Launch {
            spec,
            n_tokens: 1,
            // I/O block [pos0, token].
            args: format!(
                "(const float*)B[0] + {offset}, (int*)B[1], {n}, (int*)B[2] + 1, (int*)B[2], \
                 (int*)B[3], {ring}, {advance}"
            ),
            buffers: vec![
                f32_bytes(&x),
                i32_bytes(&[-1]),
                i32_bytes(&[self.pos0(), -1]),
                i32_bytes(&[-1; RING]),
            ],
        }
    }

    /// The first index of each block's slice after the first, as the kernel splits the row:
    /// the unaligned head to block 0, then equal runs of 16-byte groups.
    fn boundaries(&self) -> Vec<usize> {
        let n = self.row.len();
        let blocks = self.context().knobs().blocks as usize;
        let head = n.min((4 - self.offset % 4) % 4);
        let n4 = (n - head) / 4;
        let per_block = n4.div_ceil(blocks);
        (1..blocks)
            .map(|b| head + 4 * per_block * b)
            .filter(|&i| i < head + 4 * n4)
            .collect()
    }
}

/// Rows of `n` values at `offset` for one geometry: random values, with maxima placed around
/// the block boundaries, in the head and in the tail.
fn rows_of(
    rng: &mut Rng,
    target: &'static str,
    knobs: Option<(u32, u32)>,
    offset: usize,
    n: usize,
) -> Vec<Case> {
    let mut case = |label: &str, edit: &dyn Fn(&mut Vec<f32>, &[usize])| {
        let mut c = Case {
            label: format!("{target} {knobs:?} offset {offset} n {n}: {label}"),
            target,
            knobs,
            offset,
            row: (0..n).map(|_| rng.normal()).collect(),
        };
        let bounds = c.boundaries();
        edit(&mut c.row, &bounds);
        c
    };
    let first = |b: &[usize]| b.first().copied().unwrap_or(n / 2);
    let last = |b: &[usize]| b.last().copied().unwrap_or(n / 2);
    let head = n.min((4 - offset % 4) % 4);
    vec![
        case(
            "equal maxima either side of a boundary, NaN before",
            &|r, b| {
                let at = first(b);
                r[at - 1] = 9.0;
                r[at] = 9.0;
                r[at - 2] = f32::NAN;
            },
        ),
        case("equal maxima in the first and the last block", &|r, b| {
            r[last(b)] = 9.0;
            r[first(b) - 1] = 9.0;
        }),
        case("equal maxima in the head and the tail", &|r, _| {
            r[n - 1] = 9.0;
            r[head.saturating_sub(1)] = 9.0;
        }),
        case(
            "the maximum at the end (the tail where there is one)",
            &|r, _| {
                r[n - 1] = 9.0;
                r[n - 3] = f32::NAN;
            },
        ),
    ]
}

/// Rows of NaN and -inf only: blocks with no candidate at all, and a row-wide tie.
fn rows_without_values(target: &'static str, knobs: Option<(u32, u32)>) -> Vec<Case> {
    let n = 1003;
    let mut last_only = vec![f32::NAN; n];
    last_only[n - 1] = f32::NEG_INFINITY;
    [
        ("NaN everywhere but a -inf at the end", last_only),
        ("all -inf", vec![f32::NEG_INFINITY; n]),
        ("all NaN", vec![f32::NAN; n]),
    ]
    .into_iter()
    .map(|(label, row)| Case {
        label: format!("{target} {knobs:?} n {n}: {label}"),
        target,
        knobs,
        offset: 1,
        row,
    })
    .collect()
}

fn cases() -> Vec<Case> {
    let mut rng = Rng::new(31);
    let mut cases = Vec::new();
    for (target, knobs) in GEOMETRIES {
        for offset in 0..4 {
            cases.extend(rows_of(&mut rng, target, knobs, offset, 1003));
        }
        cases.extend(rows_without_values(target, knobs));
    }
    // Slices of several rounds of UNROLL loads per thread.
    for offset in 0..4 {
        cases.extend(rows_of(&mut rng, "gfx1030", Some((32, 2)), offset, 4099));
    }
    // Fewer values than one block's threads, over several blocks (most of them empty).
    for knobs in [(256, 7), (32, 3)] {
        for (offset, n) in [(1, 1), (3, 3), (2, 5), (1, 37), (3, 200)] {
            let mut row: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let at = rng.below(n as u64) as usize;
            row[at] = 9.0;
            row[n - 1] = 9.0;
            cases.push(Case {
                label: format!("{knobs:?} offset {offset} n {n}: maxima at {at} and the end"),
                target: "gfx1030",
                knobs: Some(knobs),
                offset,
                row,
            });
        }
    }
    // A qwen-sized row with the default geometry.
    let mut big = Case {
        label: "151936 values, default geometry".to_string(),
        target: "gfx1030",
        knobs: None,
        offset: 3,
        row: (0..151936).map(|_| rng.normal()).collect(),
    };
    let middle = big.boundaries()[big.boundaries().len() / 2];
    big.row[middle] = 9.0;
    big.row[middle - 1] = 9.0;
    big.row[151935] = 9.0;
    cases.push(big);
    cases
}

fn ints(b: &[u8]) -> Vec<i32> {
    b.chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn check(reverse: bool) {
    let renderer = Renderer::embedded().unwrap();
    let cases = cases();
    // The geometries must split rows as the cases mean to.
    assert!(cases.iter().any(|c| c.context().blocks == 1));
    assert!(cases
        .iter()
        .any(|c| c.knobs.is_none() && c.context().blocks > 1));
    let mut launches: Vec<Launch> = cases.iter().map(|c| c.launch(&renderer)).collect();
    let name = if reverse { "argmax-rev" } else { "argmax" };
    let Some(()) = host_sim::run_repeated(name, &mut launches, RUNS as u32, reverse) else {
        return;
    };
    for (c, l) in cases.iter().zip(&launches) {
        let label = format!("{} (blocks reversed: {reverse})", c.label);
        let want = expected(&c.row);
        let pos = c.pos0() + RUNS * c.advance();
        assert_eq!(ints(&l.buffers[1]), [want], "{label}");
        assert_eq!(ints(&l.buffers[2]), [pos, want], "{label}: position, token");
        let mut ring = [-1; RING];
        for run in 1..=RUNS {
            ring[(c.pos0() + run * c.advance() - 1) as usize % RING] = want;
        }
        assert_eq!(ints(&l.buffers[3]), ring, "{label}: ring");
    }
}

#[test]
fn argmax_blocks_first_to_last() {
    check(false);
}

#[test]
fn argmax_blocks_last_to_first() {
    check(true);
}
