//! The threads that share the kernels' work: the calling thread and `threads - 1` helpers.
//!
//! A job is a number of parts in one or two lanes; every thread takes the next part of its own lane
//! (the thread's index modulo the lanes, so that each half of a split stays on its core), then of the
//! other's, until none is left. The caller takes parts too, so a helper that is asleep or descheduled
//! on a busy machine delays nothing but the one part it holds. Two jobs can be open at once, so that
//! work shared from inside a part (a layer's product while the next batch is gathered beside it) is
//! shared too; a third runs on its caller alone. A helper out of work looks for the next
//! job for [`SPIN`], long enough to span the gaps between a training step's kernels, then sleeps until
//! woken: it never spins without bound. Which thread computes a part never changes a number: every
//! part writes its own outputs.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper out of work keeps looking before it sleeps: a training step's kernels are a few
/// microseconds apart, while waking a sleeping thread costs tens of them.
pub const SPIN: Duration = Duration::from_micros(300);

/// The most lanes a job has: one, or two halves.
pub const MAX_LANES: usize = 2;

/// The most jobs open at once.
const MAX_JOBS: usize = 2;

/// A fixed set of threads that share jobs. The process's pool ([`Pool::global`]) is sized once by
/// `--threads`; a test runs work on a pool of its own with [`Pool::install`].
pub struct Pool {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// [`State::generation`], read without the lock by the spinning helpers.
    generation: AtomicU64,
}

struct State {
    /// The jobs open to helpers, or null.
    jobs: [*const Job<'static>; MAX_JOBS],
    generation: u64,
    stop: bool,
}

// SAFETY: `jobs` point to live jobs where they are not null (see `Pool::run`).
unsafe impl Send for State {}

/// One job, on its caller's stack.
struct Job<'a> {
    work: &'a (dyn Fn(usize, usize) + Sync),
    parts: [usize; MAX_LANES],
    lanes: usize,
    next: [AtomicUsize; MAX_LANES],
    /// Helpers inside the job: the caller returns only once it is 0 and no helper can enter.
    inside: AtomicUsize,
    /// The threads that may take part, the caller included.
    threads: usize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Takes and runs parts until none is left, starting in lane `me % lanes`.
    fn take_parts(&self, me: usize) {
        for l in 0..self.lanes {
            let lane = (me + l) % self.lanes;
            loop {
                let p = self.next[lane].fetch_add(1, Ordering::Relaxed);
                if p >= self.parts[lane] {
                    break;
                }
                (self.work)(lane, p);
            }
        }
    }

    fn has_parts(&self) -> bool {
        (0..self.lanes).any(|l| self.next[l].load(Ordering::Relaxed) < self.parts[l])
    }
}

thread_local! {
    /// The pool this thread's work is shared on, when not the global one.
    static CURRENT: Cell<*const Pool> = const { Cell::new(std::ptr::null()) };
}

static GLOBAL: OnceLock<Pool> = OnceLock::new();

impl Pool {
    /// A pool of `threads` threads in all: the caller and `threads - 1` helpers.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: [std::ptr::null(); MAX_JOBS],
                generation: 0,
                stop: false,
            }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
        });
        let mut pool = Pool {
            shared,
            helpers: Vec::new(),
        };
        for me in 1..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let helper = std::thread::Builder::new()
                .name(format!("mlp-helper-{me}"))
                .spawn(move || help(&shared, me))?;
            pool.helpers.push(helper);
        }
        Ok(pool)
    }

    /// Sizes the process's pool; an error if it is already made with another size.
    pub fn configure(threads: usize) -> std::io::Result<()> {
        let mut made = None;
        let pool = GLOBAL.get_or_init(|| {
            let pool = Pool::new(threads);
            let (pool, error) = match pool {
                Ok(pool) => (pool, None),
                Err(e) => (Pool::new(1).expect("no helper to start"), Some(e)),
            };
            made = error;
            pool
        });
        match made {
            Some(e) => Err(e),
            None if pool.threads() != threads.max(1) => Err(std::io::Error::other(format!(
                "the pool already has {} threads",
                pool.threads()
            ))),
            None => Ok(()),
        }
    }

    /// The process's pool: as configured, else one thread per core.
    pub fn global() -> &'static Pool {
        GLOBAL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Pool::new(cores).unwrap_or_else(|_| Pool::new(1).expect("no helper to start"))
        })
    }

    /// The pool work shared from this thread runs on.
    pub fn current() -> &'static Pool {
        let p = CURRENT.get();
        if p.is_null() {
            Pool::global()
        } else {
            // SAFETY: `install` keeps the pool alive while it is current.
            unsafe { &*p }
        }
    }

    /// Runs `work` with this pool current on this thread.
    pub fn install<R>(&self, work: impl FnOnce() -> R) -> R {
        struct Restore(*const Pool);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.set(self.0);
            }
        }
        let _restore = Restore(CURRENT.replace(self));
        work()
    }

    /// Threads in all, the caller included.
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `work(lane, part)` for every part of every lane (`parts[lane]` each), shared between at
    /// most `threads` threads, and returns once all are done. With two jobs already open
    /// (`MAX_JOBS`), the parts run on this thread in turn.
    pub fn run(&self, parts: &[usize], threads: usize, work: &(dyn Fn(usize, usize) + Sync)) {
        assert!((1..=MAX_LANES).contains(&parts.len()), "one or two lanes");
        let sequential = || {
            for (lane, &n) in parts.iter().enumerate() {
                (0..n).for_each(|p| work(lane, p));
            }
        };
        let total: usize = parts.iter().sum();
        if self.helpers.is_empty() || threads <= 1 || total <= 1 {
            return sequential();
        }
        let mut counts = [0; MAX_LANES];
        counts[..parts.len()].copy_from_slice(parts);
        let job = Job {
            work,
            parts: counts,
            lanes: parts.len(),
            next: Default::default(),
            inside: AtomicUsize::new(0),
            threads,
            panicked: AtomicBool::new(false),
        };
        let slot = {
            let mut state = self.lock();
            let Some(slot) = state.jobs.iter().position(|j| j.is_null()) else {
                drop(state);
                return sequential();
            };
            // SAFETY: the lifetime is erased only while the job is open, and it is closed below
            // before `job` goes out of scope, even if a part panics.
            state.jobs[slot] = unsafe {
                std::mem::transmute::<*const Job<'_>, *const Job<'static>>(&job as *const Job<'_>)
            };
            state.generation += 1;
            self.shared
                .generation
                .store(state.generation, Ordering::Release);
            slot
        };
        self.shared.wake.notify_all();
        struct Close<'p, 'j> {
            pool: &'p Pool,
            job: &'p Job<'j>,
            slot: usize,
        }
        impl Drop for Close<'_, '_> {
            fn drop(&mut self) {
                self.pool.lock().jobs[self.slot] = std::ptr::null();
                wait_until(|| self.job.inside.load(Ordering::Acquire) == 0);
            }
        }
        let close = Close {
            pool: self,
            job: &job,
            slot,
        };
        job.take_parts(0);
        drop(close);
        assert!(
            !job.panicked.load(Ordering::Relaxed),
            "a part panicked on a helper thread"
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let mut state = self.lock();
            state.stop = true;
            state.generation += 1;
            self.shared
                .generation
                .store(state.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        for helper in self.helpers.drain(..) {
            let _ = helper.join();
        }
    }
}

/// Waits for `done`, spinning briefly, then giving the core away between looks.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// A helper's life: each new job it sees, it joins and works in until no part is left; out of work it
/// looks for [`SPIN`], then sleeps.
fn help(shared: &Shared, me: usize) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                while state.generation == seen {
                    state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                break;
            }
        }
        let job = {
            let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.stop {
                return;
            }
            seen = state.generation;
            // SAFETY: an open job lives until its caller has closed it and seen `inside` fall to 0.
            let mut open = state.jobs.iter().filter_map(|job| unsafe { job.as_ref() });
            match open.find(|job| me < job.threads && job.has_parts()) {
                Some(job) => {
                    job.inside.fetch_add(1, Ordering::Relaxed);
                    job
                }
                None => continue,
            }
        };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.take_parts(me)));
        if ran.is_err() {
            job.panicked.store(true, Ordering::Relaxed);
        }
        job.inside.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of every lane runs exactly once, on any number of threads.
    #[test]
    fn every_part_runs_once() {
        for threads in [1, 2, 3, 8] {
            let pool = Pool::new(threads).unwrap();
            for parts in [&[5usize][..], &[3, 4], &[0, 2], &[1]] {
                let counts: Vec<Vec<AtomicUsize>> = parts
                    .iter()
                    .map(|&n| (0..n).map(|_| AtomicUsize::new(0)).collect())
                    .collect();
                for _ in 0..100 {
                    pool.run(parts, threads, &|lane, p| {
                        counts[lane][p].fetch_add(1, Ordering::Relaxed);
                    });
                }
                for lane in &counts {
                    assert!(lane.iter().all(|c| c.load(Ordering::Relaxed) == 100));
                }
            }
        }
    }

    /// Work shared from inside a part is shared too, or run in place, and every job finishes.
    #[test]
    fn nested_work_finishes() {
        let pool = Pool::new(2).unwrap();
        let sum = AtomicUsize::new(0);
        pool.install(|| {
            Pool::current().run(&[4], 2, &|_, _| {
                Pool::current().run(&[3], 2, &|_, p| {
                    sum.fetch_add(p + 1, Ordering::Relaxed);
                });
            })
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4 * 6);
    }

    /// A helper left asleep past [`SPIN`] is woken by the next job.
    #[test]
    fn a_sleeping_helper_wakes() {
        let pool = Pool::new(2).unwrap();
        std::thread::sleep(SPIN * 20);
        let on_helper = AtomicBool::new(false);
        let caller = std::thread::current().id();
        for _ in 0..1000 {
            pool.run(&[1, 1], 2, &|_, _| {
                if std::thread::current().id() != caller {
                    on_helper.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            });
            if on_helper.load(Ordering::Relaxed) {
                return;
            }
        }
        panic!("no part ran on the helper");
    }
}
