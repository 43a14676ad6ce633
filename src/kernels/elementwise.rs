//! Element-wise passes over rows of floats: the SGD update, standalone activations, and the sums the
//! first layer's sparse path needs. Each is one scalar expression per element, in loops the compiler
//! vectorises for the backend's registers ([`with_backend`]); sums over rows go row after row.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::{Backend, Epilogue};

/// Runs `f` compiled for `backend`'s instruction set: `f` is inlined into a function with the
/// backend's target features, so the loops in it are vectorised for them.
#[inline(always)]
pub fn with_backend<R>(backend: Backend, f: impl FnOnce() -> R) -> R {
    assert!(
        backend.available(),
        "the {backend} kernels cannot run on this CPU"
    );
    match backend {
        Backend::Portable => f(),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            fn run<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { run(f) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => {
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn run<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { run(f) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the portable backend is available off x86-64"),
    }
}

/// `out[i] = epi(out[i] + partial[i])` for every row `i`: the two halves of a sum added, then the
/// epilogue the product would have applied.
pub fn add_halves<E: Epilogue>(
    backend: Backend,
    mut out: ArrayViewMut2<f32>,
    partial: ArrayView2<f32>,
    epi: &E,
) {
    assert_eq!(out.dim(), partial.dim(), "two halves of one sum");
    with_backend(
        backend,
        #[inline(always)]
        || {
            for (i, (mut row, part)) in out.rows_mut().into_iter().zip(partial.rows()).enumerate() {
                let row = row.as_slice_mut().expect("rows");
                for (x, &y) in row.iter_mut().zip(part.to_slice().expect("rows")) {
                    *x += y;
                }
                epi.apply(i, 0, row);
            }
        },
    )
}

/// `sums = Σ rows`, from zero, row after row (a bias gradient).
pub fn add_rows<'r>(backend: Backend, rows: impl Iterator<Item = &'r [f32]>, sums: &mut [f32]) {
    with_backend(
        backend,
        #[inline(always)]
        || {
            sums.fill(0.0);
            for row in rows {
                for (s, &x) in sums.iter_mut().zip(row) {
                    *s += x;
                }
            }
        },
    )
}

/// `out = scale · x`.
pub fn scale_into(backend: Backend, scale: f32, x: &[f32], out: &mut [f32]) {
    with_backend(
        backend,
        #[inline(always)]
        || {
            for (o, &x) in out.iter_mut().zip(x) {
                *o = scale * x;
            }
        },
    )
}
