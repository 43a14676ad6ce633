//! The machine's multiply-add peak (`mlp bench --peak`): the ceiling to read `mlp bench`'s seconds
//! against, and a check of what a second thread can add.
//!
//! Twelve independent chains of vector FMAs on registers, nothing loaded or stored: one thread alone,
//! then every thread at once. Two virtual CPUs that share one physical core's vector units show here as
//! two threads that each reach half of one alone.

use std::sync::Barrier;
use std::time::Instant;

/// FMAs per loop round, one per chain: enough chains to cover two FMA units' four-cycle latency.
const CHAINS: usize = 12;
/// Rounds per measurement: about 0.1 s at 5 G FMAs a second.
const ROUNDS: u64 = 40_000_000;

/// Multiply-adds a second, in vectors of `lanes` floats.
#[derive(Debug, Clone)]
pub struct Peak {
    pub lanes: usize,
    /// One thread, the others idle.
    pub alone: f64,
    /// Each thread's rate with all of them running at once.
    pub together: Vec<f64>,
}

impl Peak {
    pub fn write(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let flops = |rate: f64| rate * 2.0 * self.lanes as f64 / 1e9;
        writeln!(
            out,
            "multiply-add peak, {}-float vector FMAs, {CHAINS} independent chains in registers",
            self.lanes
        )?;
        writeln!(
            out,
            "1 thread alone        {:6.2} G FMAs/s  {:6.0} GFLOP/s",
            self.alone / 1e9,
            flops(self.alone)
        )?;
        let total: f64 = self.together.iter().sum();
        let each: Vec<String> = self
            .together
            .iter()
            .map(|r| format!("{:.2}", r / 1e9))
            .collect();
        let threads = match self.together.len() {
            1 => "1 thread again ".to_string(),
            n => format!("{n} threads at once"),
        };
        writeln!(
            out,
            "{threads:<21} {:6.2} G FMAs/s  {:6.0} GFLOP/s  (each: {})",
            total / 1e9,
            flops(total),
            each.join(", ")
        )
    }
}

/// Measures one thread alone, then `threads` threads started together.
pub fn measure(threads: usize) -> Peak {
    let (lanes, alone) = fma_rate();
    let start = Barrier::new(threads);
    let together = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    fma_rate().1
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("the FMA loop does not panic"))
            .collect()
    });
    Peak {
        lanes,
        alone,
        together,
    }
}

/// (lanes, vector FMAs a second) on this thread, in the widest vectors the CPU has.
fn fma_rate() -> (usize, f64) {
    let start = Instant::now();
    let (lanes, sum) = widest_chains(ROUNDS);
    std::hint::black_box(sum);
    (
        lanes,
        (ROUNDS * CHAINS as u64) as f64 / start.elapsed().as_secs_f64(),
    )
}

/// Runs `rounds` rounds of the chains in the widest vectors the CPU has: (their width, the sum).
fn widest_chains(rounds: u64) -> (usize, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::Backend;
        if Backend::Avx512.available() {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return (16, unsafe { chains_avx512(rounds) });
        }
        if Backend::Avx2.available() {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return (8, unsafe { chains_avx2(rounds) });
        }
    }
    // Vectors of four (SSE2, the default target); without FMA units each is a multiply and an add.
    (4, chains_portable(rounds))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chains_avx512(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    let m = _mm512_set1_ps(std::hint::black_box(0.999_9));
    let c = _mm512_set1_ps(std::hint::black_box(1e-4));
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    let m = _mm256_set1_ps(std::hint::black_box(0.999_9));
    let c = _mm256_set1_ps(std::hint::black_box(1e-4));
    for _ in 0..rounds {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut lanes = [0f32; 8];
    acc.iter()
        .map(|&a| {
            // SAFETY: `lanes` holds the 8 floats of one vector.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            lanes.iter().sum::<f32>()
        })
        .sum()
}

fn chains_portable(rounds: u64) -> f32 {
    let mut acc = [[0f32; 4]; CHAINS];
    let m = std::hint::black_box(0.999_9f32);
    let c = std::hint::black_box(1e-4f32);
    for _ in 0..rounds {
        for chain in &mut acc {
            for a in chain.iter_mut() {
                *a = *a * m + c;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable loop computes what it claims: each chain is the same affine recurrence.
    #[test]
    fn every_chain_converges_to_the_fixed_point() {
        // x <- 0.9999 x + 1e-4 tends to 1; after 100,000 rounds it is 1 - 0.9999^100000 = 1 - 4.5e-5
        // in exact arithmetic, within 1e-3 of that in f32 (rounding drifts a 10^-4 step).
        let want = 1.0 - 0.999_9f32.powi(100_000);
        let sum = chains_portable(100_000);
        let n = (CHAINS * 4) as f32;
        assert!((sum - n * want).abs() < n * 1e-3, "{sum} vs {}", n * want);
    }

    /// So does the loop `--peak` times on this CPU, in its widest vectors.
    #[test]
    fn the_widest_chains_converge_too() {
        let want = 1.0 - 0.999_9f32.powi(100_000);
        let (lanes, sum) = widest_chains(100_000);
        let n = (CHAINS * lanes) as f32;
        assert!(
            (sum - n * want).abs() < n * 1e-3,
            "{lanes} lanes: {sum} vs {}",
            n * want
        );
    }

    #[test]
    fn measures_each_thread_and_says_so() {
        let peak = measure(2);
        assert!(peak.alone.is_finite() && peak.alone > 0.0);
        assert_eq!(peak.together.len(), 2);
        assert!(peak.together.iter().all(|r| r.is_finite() && *r > 0.0));
        let mut text = Vec::new();
        peak.write(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("1 thread alone") && text.contains("2 threads at once"),
            "{text}"
        );
    }
}
