//! Times the dense products of MLP1 and MLP2 (batch 100, f32) through mlp's kernel (`mlp::linalg::matmul`,
//! with the helper thread on two threads, as `mlp train` runs it), matrixmultiply (ndarray's
//! `general_mat_mul`, `threading` feature), the gemm crate and faer: 600 products each (an epoch's
//! worth), the libraries alternated, median and minimum of 9 rounds, with every result checked against
//! matrixmultiply's. Hot caches: the products alone, not inside training.
//!
//! Usage: `RMM_NUM_THREADS=N cargo run --release -- N` with N = 1 or 2 threads.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

#[derive(Clone, Copy, Debug)]
enum Lib {
    Mlp,
    Matrixmultiply,
    Gemm,
    Faer,
}

const LIBS: [Lib; 4] = [Lib::Mlp, Lib::Matrixmultiply, Lib::Gemm, Lib::Faer];
const PRODUCTS: usize = 600;
const ROUNDS: usize = 9;

/// `c = a · b` through `lib` on `threads` threads.
fn product(
    lib: Lib,
    threads: usize,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
) {
    let ((m, k), n) = (a.dim(), b.ncols());
    match lib {
        Lib::Mlp => mlp::linalg::matmul(a, b, None, c),
        Lib::Matrixmultiply => ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c),
        // SAFETY: the pointers, shapes and strides are those of the three views.
        Lib::Gemm => unsafe {
            let par = match threads {
                1 => gemm::Parallelism::None,
                t => gemm::Parallelism::Rayon(t),
            };
            let (cs, ast, bs) = (c.strides().to_vec(), a.strides(), b.strides());
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                cs[1],
                cs[0],
                false,
                a.as_ptr(),
                ast[1],
                ast[0],
                b.as_ptr(),
                bs[1],
                bs[0],
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        },
        // SAFETY: as above.
        Lib::Faer => unsafe {
            let par = match threads {
                1 => faer::Par::Seq,
                t => faer::Par::rayon(t),
            };
            let (ast, bs, cs) = (a.strides(), b.strides(), c.strides().to_vec());
            let a = faer::MatRef::from_raw_parts(a.as_ptr(), m, k, ast[0], ast[1]);
            let b = faer::MatRef::from_raw_parts(b.as_ptr(), k, n, bs[0], bs[1]);
            let c = faer::MatMut::from_raw_parts_mut(c.as_mut_ptr(), m, n, cs[0], cs[1]);
            faer::linalg::matmul::matmul(c, faer::Accum::Replace, a, b, 1.0f32, par);
        },
    }
}

/// How the layer's operands are stored: as given, `a` transposed (`xᵀ D`), `b` transposed (`D Wᵀ`).
#[derive(PartialEq)]
enum Form {
    Plain,
    ATransposed,
    BTransposed,
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(1, |s| s.parse().expect("a thread count"));
    let filled = |rows, cols, seed| {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            ((i * 7 + j * 3 + seed) % 17) as f32 * 0.01 - 0.08
        })
    };
    let shapes = [
        (
            "MLP2 fc2 x W    100x500 . 500x256",
            100,
            500,
            256,
            Form::Plain,
        ),
        (
            "MLP2 fc2 xT D   500x100 . 100x256",
            500,
            100,
            256,
            Form::ATransposed,
        ),
        (
            "MLP2 fc2 D WT   100x256 . 256x500",
            100,
            256,
            500,
            Form::BTransposed,
        ),
        (
            "MLP1 fc2 x W    100x256 . 256x10 ",
            100,
            256,
            10,
            Form::Plain,
        ),
        (
            "MLP1 fc2 xT D   256x100 . 100x10 ",
            256,
            100,
            10,
            Form::ATransposed,
        ),
        (
            "MLP1 fc2 D WT   100x10  . 10x256 ",
            100,
            10,
            256,
            Form::BTransposed,
        ),
    ];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a pool");
    println!(
        "{threads} thread(s): seconds for {PRODUCTS} products, median of {ROUNDS} (minimum), GFLOP/s at the median"
    );
    for (name, m, k, n, form) in shapes {
        let a_stored = if form == Form::ATransposed {
            filled(k, m, 1)
        } else {
            filled(m, k, 1)
        };
        let b_stored = if form == Form::BTransposed {
            filled(n, k, 2)
        } else {
            filled(k, n, 2)
        };
        let a = if form == Form::ATransposed {
            a_stored.t()
        } else {
            a_stored.view()
        };
        let b = if form == Form::BTransposed {
            b_stored.t()
        } else {
            b_stored.view()
        };
        let mut want = Array2::<f32>::zeros((m, n));
        ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut want);
        let mut times = vec![Vec::new(); LIBS.len()];
        let mut c = Array2::<f32>::zeros((m, n));
        for _ in 0..ROUNDS {
            for (times, &lib) in times.iter_mut().zip(&LIBS) {
                let seconds = pool.install(|| {
                    let mut timed = || {
                        product(lib, threads, a, b, c.view_mut());
                        let start = Instant::now();
                        for _ in 0..PRODUCTS {
                            product(lib, threads, a, b, c.view_mut());
                        }
                        start.elapsed().as_secs_f64()
                    };
                    match (threads, lib) {
                        (2, Lib::Mlp) => mlp::parallel::with_helper(timed),
                        _ => timed(),
                    }
                });
                let error = c
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(error < 1e-3, "{lib:?}, {name}: off by {error}");
                times.push(seconds);
            }
        }
        let flop = 2.0 * (m * k * n * PRODUCTS) as f64;
        print!("{name}");
        for (times, lib) in times.iter_mut().zip(&LIBS) {
            times.sort_by(f64::total_cmp);
            let median = times[ROUNDS / 2];
            print!(
                "  {lib:?} {median:.4} ({:.4}) {:.0}",
                times[0],
                flop / median / 1e9
            );
        }
        println!();
    }
}
