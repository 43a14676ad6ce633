//! Element-wise passes over rows of floats: the SGD update, standalone activations, and the sums the
//! first layer's sparse path needs. Each is one scalar expression per element, in loops the compiler
//! vectorises for the backend's registers ([`with_backend`]); sums over rows go row after row.

use super::Backend;

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

/// `sums = init`, then `sums = scale · row + sums` (a fused multiply-add) for each row in order.
pub fn column_sums<'r>(
    backend: Backend,
    init: &[f32],
    scale: f32,
    rows: impl Iterator<Item = &'r [f32]>,
    sums: &mut [f32],
) {
    with_backend(
        backend,
        #[inline(always)]
        || {
            sums.copy_from_slice(init);
            for row in rows {
                for (s, &x) in sums.iter_mut().zip(row) {
                    *s = scale.mul_add(x, *s);
                }
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
