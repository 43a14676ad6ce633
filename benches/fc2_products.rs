//! The products of MLP2's second layer one step takes (batch 100, a 500 x 256 weight), one by one on
//! one thread: the `Wᵀ` copy, `D Wᵀ`, the gradient `hᵀ D` and the forward pass `h W`.
//! `cargo bench --bench fc2_products`, `MLP_KERNELS` for a backend.

use std::time::Instant;

use mlp::kernels::{Dense, Plain, Pool, current, transpose_into};

/// Calls timed per set, after as many to warm up.
const CALLS: usize = 600;

fn main() {
    let backend = current();
    let h = mlp::param::padded(100, 500) + 0.125;
    let d = mlp::param::padded(100, 256) + 0.25;
    let w = mlp::param::padded(500, 256) + 0.5;
    let (mut wt, mut dinp) = (mlp::param::padded(256, 500), mlp::param::padded(100, 500));
    let (mut dw, mut out) = (mlp::param::padded(500, 256), mlp::param::padded(100, 256));
    let fmas = 100 * 500 * 256;
    println!("{backend} kernels, one thread; µs a call, median of 7 sets of {CALLS}");
    Pool::new(1).expect("a thread").install(|| {
        time("Wᵀ copy (500 x 256)", 0, || {
            transpose_into(backend, w.view(), wt.view_mut())
        });
        time("D Wᵀ (100 x 256 x 500)", fmas, || {
            let mut c = dinp.view_mut();
            Dense::new(d.view(), wt.view(), None, &mut c).run(backend, &Plain)
        });
        time("hᵀ D (500 x 100 x 256)", fmas, || {
            let mut c = dw.view_mut();
            Dense::new(h.t(), d.view(), None, &mut c).run(backend, &Plain)
        });
        time("h W (100 x 500 x 256)", fmas, || {
            let mut c = out.view_mut();
            Dense::new(h.view(), w.view(), None, &mut c).run(backend, &Plain)
        });
    });
}

/// Prints the median time of `f` and, for a product of `fmas` multiply-adds, its rate.
fn time(name: &str, fmas: usize, mut f: impl FnMut()) {
    (0..CALLS).for_each(|_| f());
    let mut sets: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            (0..CALLS).for_each(|_| f());
            start.elapsed().as_secs_f64() / CALLS as f64
        })
        .collect();
    sets.sort_by(f64::total_cmp);
    let rate = match fmas {
        0 => String::new(),
        _ => format!(
            "  {:.2} G 16-float FMAs/s",
            fmas as f64 / 16.0 / sets[3] / 1e9
        ),
    };
    println!("{name:26} {:8.1}{rate}", sets[3] * 1e6);
}
