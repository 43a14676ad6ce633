//! What a pause costs the next product: MLP2's fc2 forward (100 x 500 x 256) timed back to back, after
//! 60 µs in which the cores run no vector code, and after its weight was rewritten by rows on every
//! thread (as the fused update does). `cargo bench --bench dense_gaps`, `MLP_KERNELS` for a backend.

use std::time::{Duration, Instant};

use mlp::kernels::{Dense, Plain, Pool, current};
use ndarray::Array2;

/// Products timed per case, after as many to warm up.
const STEPS: usize = 2400;

fn main() {
    let (m, k, n) = (100, 500, 256);
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j) % 13) as f32 * 0.01);
    let mut b = mlp::param::padded(k, n) + 0.5;
    let mut c = mlp::param::padded(m, n);
    println!(
        "{} kernels; ms per product, median of 5 sets of {STEPS}",
        current()
    );
    for (case, before) in [
        ("back to back", Before::Nothing),
        ("after a 60 µs pause", Before::Pause),
        ("after the weight is rewritten", Before::Rewrite),
    ] {
        print!("{case:32}");
        for threads in [1, 2] {
            let pool = Pool::new(threads).expect("threads");
            let mut sets: Vec<f64> = (0..5)
                .map(|_| {
                    pool.install(|| {
                        let mut total = Duration::ZERO;
                        for step in 0..2 * STEPS {
                            before.run(&mut b, threads);
                            let start = Instant::now();
                            let mut out = c.view_mut();
                            Dense::new(a.view(), b.view(), None, &mut out).run(current(), &Plain);
                            if step >= STEPS {
                                total += start.elapsed();
                            }
                        }
                        total.as_secs_f64() * 1e3 / STEPS as f64
                    })
                })
                .collect();
            sets.sort_by(f64::total_cmp);
            print!("  {threads} thread(s) {:.4}", sets[2]);
        }
        println!();
    }
}

#[derive(Clone, Copy)]
enum Before {
    Nothing,
    Pause,
    Rewrite,
}

impl Before {
    fn run(self, b: &mut Array2<f32>, threads: usize) {
        match self {
            Before::Nothing => {}
            Before::Pause => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(60) {}
            }
            Before::Rewrite => {
                /// The weight by pointer, for the threads, which write disjoint rows.
                struct Rows(*mut f32, usize, usize);
                // SAFETY: each part writes its own rows.
                unsafe impl Sync for Rows {}
                let rows = Rows(b.as_mut_ptr(), b.strides()[0] as usize, b.ncols());
                let (rows, k) = (&rows, b.nrows());
                Pool::current().run(&[k.div_ceil(32)], threads, &|_, part| {
                    for r in part * 32..((part + 1) * 32).min(k) {
                        // SAFETY: row r < k of the weight, its first `ncols` floats.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(rows.0.add(r * rows.1), rows.2)
                        };
                        row.iter_mut().for_each(|x| *x *= 1.000_000_1);
                    }
                });
            }
        }
    }
}
