//! `e^x` for f32 in straight-line code that the compiler vectorises, for the sigmoid layer: the standard
//! library's `f32::exp` is a call into libm per element, many times slower than ReLU's pass (the
//! softmax keeps `f32::exp`: ten a row).
//!
//! Cephes' `expf` method: `x = n ln 2 + r` with `n` a whole number and `|r| <= ln 2 / 2`, `e^r` by a
//! degree-6 polynomial, times `2^n` built from its exponent bits. Within one unit in the last place of
//! the correctly rounded result where that is a normal float (tested against f64 below, 475,000 points).

/// `x` past which `e^x` would overflow 2^127 · 2: clamped there (so `e^+inf` is 2.4e38, not inf).
const HIGH: f32 = 88.376_26;
/// `x` below which `2^n` would have no normal exponent: clamped there, where the result is 0.
const LOW: f32 = -88.376_26;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, the first part exact in a few bits, so that `x - n ln 2` loses nothing.
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding it rounds a float of magnitude below 2^22 to a whole number, which then sits in
/// the low bits of the sum's mantissa.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`; NaN gives NaN. Below -87.3, where the true result is a subnormal float, it is 0 or a
/// subnormal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // `clamp` lets NaN through.
    let x = x.clamp(LOW, HIGH);
    let shifted = x * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n = shifted's bits minus ROUNDER's, in -127..=127; 2^n has the biased exponent n + 127.
    let whole = shifted.to_bits().wrapping_sub(ROUNDER.to_bits()) as i32;
    let two_n = f32::from_bits((whole.wrapping_add(127) as u32) << 23);
    e_r * two_n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `got` and the f64 truth rounded to f32.
    fn ulps(got: f32, want: f64) -> u32 {
        let want = want as f32;
        (got.to_bits() as i64 - want.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn within_one_ulp_where_the_result_is_normal() {
        let mut worst = (0, 0.0f32);
        let mut x = -87.0f32;
        while x < 88.3 {
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_37;
        }
        assert!(worst.0 <= 1, "{} ulps at x = {}", worst.0, worst.1);
    }

    #[test]
    fn edges() {
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(-87.5) < 1.2e-38 && exp(-87.5) >= 0.0);
        let top = exp(f32::INFINITY);
        assert!(top.is_finite() && top > 2.0e38, "{top}");
        assert_eq!(exp(1000.0), top);
    }
}
