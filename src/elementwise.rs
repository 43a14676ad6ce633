//! Element-wise loops over `f32` slices, written plainly for the compiler to vectorise, and compiled
//! for AVX-512 where the CPU has it (the default x86-64 target stops at SSE2, four floats at a time):
//! the activations' passes and the first layer's column sums go through them.

/// `out[i] = f(a[i], b[i])`.
pub fn map_slices(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { map_slices_avx512(a, b, out, f) };
    }
    map_slices_portable(a, b, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn map_slices_avx512(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    map_slices_portable(a, b, out, f)
}

#[inline(always)]
fn map_slices_portable(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

/// `row[i] = f(row[i])`, vectorised as [`map_slices`].
pub fn map_in_place(row: &mut [f32], f: impl Fn(f32) -> f32 + Copy) {
    update_in_place(row, &[], |x, _| f(x));
}

/// `row[i] = f(row[i], b[i])`, or `f(row[i], 0.0)` for every element when `b` is empty; vectorised as
/// [`map_slices`].
pub fn update_in_place(row: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    assert!(
        b.is_empty() || b.len() == row.len(),
        "as many elements in each"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { update_in_place_avx512(row, b, f) };
    }
    update_in_place_portable(row, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn update_in_place_avx512(row: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    update_in_place_portable(row, b, f)
}

#[inline(always)]
fn update_in_place_portable(row: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    if b.is_empty() {
        row.iter_mut().for_each(|x| *x = f(*x, 0.0));
    } else {
        row.iter_mut().zip(b).for_each(|(x, &b)| *x = f(*x, b));
    }
}
