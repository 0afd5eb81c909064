//! Shared low-level helpers for the parallel passes over a [`Matrix`](crate::Matrix).
//!
//! Every pass splits the rows into fixed chunks of [`CHUNK_ROWS`], computes one partial result per chunk
//! in parallel (rayon) and combines the partial results *in chunk order*. The chunking does not depend on
//! the number of threads, so a fit gives bit-identical results on 1 or 64 cores.

/// Rows per parallel chunk: 8192 rows x 8 features x 8 bytes = 512 KiB, a few L2-sized pieces.
pub(crate) const CHUNK_ROWS: usize = 8192;

/// Calls `$f::<D>(args..)` with `D` equal to the runtime dimension `$d` for 1..=16, or `D = 0` (fully
/// dynamic) above that. Kernels write `let d = if D == 0 { d } else { D };` so the specialised copies
/// have a compile-time feature count and their inner loops unroll and vectorise.
macro_rules! dispatch_dim {
    ($d:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $d {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            10 => $f::<10>($($arg),*),
            11 => $f::<11>($($arg),*),
            12 => $f::<12>($($arg),*),
            13 => $f::<13>($($arg),*),
            14 => $f::<14>($($arg),*),
            15 => $f::<15>($($arg),*),
            16 => $f::<16>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}
pub(crate) use dispatch_dim;

/// Squared Euclidean distance between `a` and `b` (both of length `d`, or `D` when `D > 0`).
#[inline(always)]
pub(crate) fn sq_dist<const D: usize>(a: &[f64], b: &[f64], d: usize) -> f64 {
    let d = if D == 0 { d } else { D };
    let (a, b) = (&a[..d], &b[..d]);
    let mut s = 0.0;
    for j in 0..d {
        let t = a[j] - b[j];
        s += t * t;
    }
    s
}

/// Index and squared distance of the nearest of the `k` row-major `centers`.
#[inline(always)]
pub(crate) fn nearest<const D: usize>(x: &[f64], d: usize, centers: &[f64], k: usize) -> (usize, f64) {
    let d = if D == 0 { d } else { D };
    let mut best = 0;
    let mut best_d = f64::INFINITY;
    for c in 0..k {
        let dist = sq_dist::<D>(x, &centers[c * d..(c + 1) * d], d);
        if dist < best_d {
            best_d = dist;
            best = c;
        }
    }
    (best, best_d)
}

/// Column means and mean of the column variances (population variance, like numpy's `var`), in one
/// parallel pass shifted by the first row to keep the sum of squares well conditioned.
pub(crate) fn mean_variance(data: &crate::Matrix) -> (Vec<f64>, f64) {
    use rayon::prelude::*;
    let d = data.ncols();
    let n = data.nrows();
    if n == 0 || d == 0 {
        return (vec![0.0; d], 0.0);
    }
    let shift = data.row(0).to_vec();
    let partials: Vec<(Vec<f64>, Vec<f64>)> = data
        .as_slice()
        .par_chunks(CHUNK_ROWS * d)
        .map(|chunk| {
            let mut s1 = vec![0.0; d];
            let mut s2 = vec![0.0; d];
            for x in chunk.chunks_exact(d) {
                for j in 0..d {
                    let t = x[j] - shift[j];
                    s1[j] += t;
                    s2[j] += t * t;
                }
            }
            (s1, s2)
        })
        .collect();
    let mut s1 = vec![0.0; d];
    let mut s2 = vec![0.0; d];
    for (a, b) in partials {
        for j in 0..d {
            s1[j] += a[j];
            s2[j] += b[j];
        }
    }
    let nf = n as f64;
    let mut mean = vec![0.0; d];
    let mut var_sum = 0.0;
    for j in 0..d {
        let m = s1[j] / nf;
        mean[j] = shift[j] + m;
        var_sum += (s2[j] / nf - m * m).max(0.0);
    }
    (mean, var_sum / d as f64)
}
