//! Seeded synthetic windows for the benches: a normal and a DoS cluster of 8 counters (the same shape
//! as scripts/detect-vs-sklearn.py, smaller).

use detect::Matrix;

pub fn mixture(n: usize, seed: u64) -> Matrix {
    let mut s = seed | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut normal = move || {
        let (u, v) = (uniform(), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let means = [
        [1200.0, 300.0, 150.0, 40.0, 600.0, 2000.0, 1800.0, 900.0],
        [9000.0, 2500.0, 400.0, 60.0, 1500.0, 60000.0, 3000.0, 7000.0],
    ];
    let mut data = Vec::with_capacity(n * 8);
    for i in 0..n {
        let c = usize::from(i % 5 == 0);
        let load = normal();
        for m in means[c] {
            data.push((m * (1.0 + 0.15 * (0.6 * load + 0.8 * normal()))).round().max(0.0));
        }
    }
    Matrix::new(n, 8, data).unwrap()
}
