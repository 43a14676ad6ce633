//! The arithmetic that training spends its time in, behind one backend chosen once.
//!
//! Every kernel has one source, written as plain Rust over fixed-width blocks of floats, and is
//! instantiated three times: `portable` (no target features: the reference, and what aarch64 runs,
//! vectorised to NEON by the compiler), `avx2` (AVX2 + FMA) and `avx512` (AVX-512F). The instantiations
//! differ only in the instructions the compiler may use, never in the order of the arithmetic, so
//! every backend gives the same floats:
//!
//! - a product's output element is `init`, then one fused multiply-add per inner index, in increasing
//!   order (`acc = a·b + acc`); vectors run across output columns, never along the inner dimension;
//! - element-wise passes are the same scalar expression on every element;
//! - work is shared between threads by whole output elements; the one sum split in parts is a
//!   layer's over its inner dimension, always in the same two halves, added last ([`halves`]).
//!
//! So neither the vector width, nor the block shape, nor the thread count changes a number.

mod dense;
mod elementwise;
mod grouped;
pub mod halves;
mod pool;
mod sparse;

use std::sync::atomic::{AtomicU8, Ordering};

pub use dense::{Dense, Transpose, transpose_into};
pub use elementwise::{add_halves, add_rows, scale_into, with_backend};
pub use grouped::{GROUP, Grouped};
pub use pool::{Pool, SPIN};
pub use sparse::{ScatterProduct, SparseProduct, block_columns};

/// What a product does to each block of an output row once it is summed, while it is in registers:
/// an element-wise activation, or the derivative of one (see `network`). `apply(row, first_col,
/// block)`: `block` holds columns `first_col..` of output row `row`.
pub trait Epilogue: Sync {
    /// Whether the product writes its output: `false` for an epilogue that consumes each finished
    /// block itself (an update straight from registers), the output then left unwritten.
    const STORES: bool = true;

    fn apply(&self, row: usize, first_col: usize, block: &mut [f32]);
}

/// No epilogue.
pub struct Plain;

impl Epilogue for Plain {
    #[inline(always)]
    fn apply(&self, _row: usize, _first_col: usize, _block: &mut [f32]) {}
}

/// An instruction set the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Plain Rust with no target features: the reference, and aarch64's.
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512F.
    Avx512,
}

/// `--kernels`: a backend, or `auto` for the best this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Choice {
    #[default]
    Auto,
    Portable,
    Avx2,
    Avx512,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Portable, Backend::Avx2, Backend::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest backend this CPU can run.
    pub fn best() -> Backend {
        [Backend::Avx512, Backend::Avx2]
            .into_iter()
            .find(|b| b.available())
            .unwrap_or(Backend::Portable)
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Choice {
    /// The backend this choice names, or why this CPU cannot run it.
    pub fn resolve(self) -> Result<Backend, String> {
        let wanted = match self {
            Choice::Auto => return Ok(Backend::best()),
            Choice::Portable => Backend::Portable,
            Choice::Avx2 => Backend::Avx2,
            Choice::Avx512 => Backend::Avx512,
        };
        if wanted.available() {
            Ok(wanted)
        } else {
            Err(format!(
                "this CPU cannot run the {wanted} kernels (it can run: {}); use --kernels auto",
                Backend::ALL
                    .iter()
                    .filter(|b| b.available())
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    /// `MLP_KERNELS`, if set: a choice, or why its value is not one.
    pub fn from_env() -> Option<Result<Choice, String>> {
        let value = std::env::var_os(ENV)?;
        let value = value.to_string_lossy();
        Some(
            <Choice as clap::ValueEnum>::from_str(value.trim(), true).map_err(|_| {
                format!(
                    "{ENV}={value:.40} is not a backend (expected auto, portable, avx2 or avx512)"
                )
            }),
        )
    }
}

/// The environment variable that chooses the backend when `--kernels` is not given.
pub const ENV: &str = "MLP_KERNELS";

/// The backend chosen for this process, 0 until [`set`] or the first [`current`].
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// Chooses the backend for every network built after this call.
pub fn set(backend: Backend) {
    assert!(backend.available(), "the {backend} kernels cannot run here");
    CHOSEN.store(backend.code(), Ordering::Relaxed);
}

/// The backend networks are built with: the one [`set`], else `MLP_KERNELS` when it names one this
/// CPU can run, else the best this CPU has. The command line checks `MLP_KERNELS` and sets it first.
pub fn current() -> Backend {
    match CHOSEN.load(Ordering::Relaxed) {
        0 => {
            let backend = Choice::from_env()
                .and_then(|c| c.ok())
                .and_then(|c| c.resolve().ok())
                .unwrap_or_else(Backend::best);
            CHOSEN.store(backend.code(), Ordering::Relaxed);
            backend
        }
        code => Backend::ALL[code as usize - 1],
    }
}

/// Defines `pub fn $name<E: Epilogue>(backend, job, part, epi)`, which runs the generic body `$body`
/// for `backend`, each instantiation compiled with its backend's target features. The block sizes are
/// per backend (their registers differ); the order of the sums is not.
macro_rules! instantiate {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($job:ty) => $body:ident
        [$($p:tt),*] [$($a:tt),*] [$($x:tt),*]) => {
        $(#[$doc])*
        $vis fn $name<E: $crate::kernels::Epilogue>(
            backend: $crate::kernels::Backend,
            job: &$job,
            part: &$crate::kernels::Part,
            epi: &E,
        ) {
            use $crate::kernels::Backend;
            assert!(backend.available(), "the {backend} kernels cannot run on this CPU");
            match backend {
                Backend::Portable => unsafe { $body::<$($p,)* E>(job, part, epi) },
                #[cfg(target_arch = "x86_64")]
                Backend::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn run<E: $crate::kernels::Epilogue>(
                        job: &$job,
                        part: &$crate::kernels::Part,
                        epi: &E,
                    ) {
                        unsafe { $body::<$($a,)* E>(job, part, epi) }
                    }
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { run(job, part, epi) }
                }
                #[cfg(target_arch = "x86_64")]
                Backend::Avx512 => {
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    unsafe fn run<E: $crate::kernels::Epilogue>(
                        job: &$job,
                        part: &$crate::kernels::Part,
                        epi: &E,
                    ) {
                        unsafe { $body::<$($x,)* E>(job, part, epi) }
                    }
                    // SAFETY: the CPU has AVX-512F (checked above).
                    unsafe { run(job, part, epi) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("only the portable backend is available off x86-64"),
            }
        }
    };
}
pub(crate) use instantiate;

/// The rows and columns of an output that one thread computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub rows: std::ops::Range<usize>,
    pub cols: std::ops::Range<usize>,
}

/// Runs `work` on every part of an `m x n` output of `work_size` multiply-adds, split by rows (in
/// multiples of `row_multiple`) when it is taller than wide, else by columns (multiples of 64), the
/// parts taken by whichever thread is free. Small work stays on this thread. The split never changes
/// a number: each output element is summed whole within one part.
pub(crate) fn for_parts(
    m: usize,
    n: usize,
    work_size: usize,
    row_multiple: usize,
    work: &(impl Fn(&Part) + Sync),
) {
    let threads = threads();
    if threads <= 1 || work_size < PARALLEL_FROM || m == 0 || n == 0 {
        return work(&Part {
            rows: 0..m,
            cols: 0..n,
        });
    }
    if m >= n || n < 2 * 64 {
        let height = part_size(m, row_multiple, threads);
        halves_of(m.div_ceil(height), threads, &|p| {
            work(&Part {
                rows: p * height..((p + 1) * height).min(m),
                cols: 0..n,
            })
        });
    } else {
        let width = part_size(n, 64, threads);
        halves_of(n.div_ceil(width), threads, &|p| {
            work(&Part {
                rows: 0..m,
                cols: p * width..((p + 1) * width).min(n),
            })
        });
    }
}

/// Runs `work(p)` for `p` in `0..parts`, the first half of the parts first taken by one thread and the
/// second by another: one core then gets the same parts of every product of the same shape.
fn halves_of(parts: usize, threads: usize, work: &(impl Fn(usize) + Sync)) {
    let first = parts.div_ceil(2);
    Pool::current().run(&[first, parts - first], threads, &|lane, p| {
        work(lane * first + p)
    });
}

/// Runs `a` and `b`, on two threads when there are two free, and returns both results.
pub fn join<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    use std::sync::Mutex;
    fn take<T>(m: &Mutex<Option<T>>) -> T {
        m.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("runs once")
    }
    fn put<T>(m: &Mutex<Option<T>>, x: T) {
        *m.lock().unwrap_or_else(|e| e.into_inner()) = Some(x);
    }
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    let (ra, rb) = (Mutex::new(None), Mutex::new(None));
    Pool::current().run(&[1, 1], threads(), &|lane, _| match lane {
        0 => put(&ra, take(&a)()),
        _ => put(&rb, take(&b)()),
    });
    (take(&ra), take(&rb))
}

/// Parts in which a split of `n` outputs is shared between the threads: enough that a thread that is
/// descheduled holds up at most a small share, and a multiple of `multiple`.
pub fn part_size(n: usize, multiple: usize, threads: usize) -> usize {
    if threads <= 1 {
        return n.max(1);
    }
    n.div_ceil(threads * PARTS_PER_THREAD)
        .next_multiple_of(multiple.max(1))
        .max(1)
}

/// Parts per thread when work is shared: a busy machine takes a core away for a few milliseconds, and
/// with eight parts a thread the others take over all but the part it holds.
pub(crate) const PARTS_PER_THREAD: usize = 8;

/// The most threads work is shared between, 0 for all the pool's.
static THREAD_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Shares work between at most `n` threads from now on (the pool keeps its size): the default
/// `--threads` leaves the cores other programs are using. It changes no number.
pub fn limit_threads(n: usize) {
    THREAD_LIMIT.store(n, Ordering::Relaxed);
}

/// The threads work is shared between.
pub fn threads() -> usize {
    let all = Pool::current().threads();
    match THREAD_LIMIT.load(Ordering::Relaxed) {
        0 => all,
        limit => limit.min(all),
    }
}

/// Work smaller than this many multiply-adds stays on the calling thread: handing a part to another
/// thread costs microseconds.
pub(crate) const PARALLEL_FROM: usize = 1 << 18;
