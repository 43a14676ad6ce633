//! A second thread that waits for work by spinning, for two-way fork-joins that cost well under a
//! microsecond. rayon's `join` puts an idle worker to sleep within microseconds, and waking it cost
//! about 8 us a join here (measured with 10 us halves after a 20 us gap) while a training step of MLP1
//! forks five or more times around short sequential stages.
//!
//! The helper spins for [`SPIN_FOR`] after its last job, then parks until the next one.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::*};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the helper spins for a next job before it parks: longer than any sequential stretch of a
/// training step, short enough that an idle process stops burning a core at once.
const SPIN_FOR: Duration = Duration::from_millis(1);

const IDLE: u8 = 0;
const POSTED: u8 = 1;
const DONE: u8 = 2;
const STOP: u8 = 3;

/// A job on the forking thread's stack, its lifetime erased: the forking thread waits for it to be
/// done before that stack frame ends, panics included.
struct Job(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the closure behind the pointer is `Send`; only one thread touches it at a time (the state's
// release/acquire hand it over and back).
unsafe impl Send for Job {}

struct Shared {
    state: AtomicU8,
    parked: AtomicBool,
    job: UnsafeCell<Option<Job>>,
    panic: UnsafeCell<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` and `panic` are written by one side and read by the other only across a store and a
// load of `state` (POSTED hands them to the helper, DONE back), so never at the same time.
unsafe impl Sync for Shared {}

/// The forking thread's end: owns the helper thread and stops it when dropped.
pub struct Pair {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

impl Pair {
    pub fn new() -> Pair {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            parked: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            panic: UnsafeCell::new(None),
        });
        let theirs = Arc::clone(&shared);
        let helper = thread::Builder::new()
            .name("mlp-helper".into())
            .spawn(move || help(&theirs))
            .expect("spawning the helper thread");
        Pair {
            shared,
            helper: Some(helper),
        }
    }

    /// Runs `a` here and `b` on the helper at once, and returns both results; a panic in either is
    /// resumed here once both have finished.
    pub fn join<RA, RB: Send>(
        &self,
        a: impl FnOnce() -> RA,
        b: impl FnOnce() -> RB + Send,
    ) -> (RA, RB) {
        let shared = &*self.shared;
        let mut rb = None;
        let ra;
        {
            let mut b = Some(b);
            let mut job = || rb = Some((b.take().expect("run once"))());
            let job: &mut (dyn FnMut() + Send) = &mut job;
            // SAFETY: only the lifetime changes; `Wait` below keeps this frame alive until the helper
            // has finished with the closure.
            let job: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(job) };
            // SAFETY: the helper is IDLE, so it does not read `job` now (see `Shared`).
            unsafe { *shared.job.get() = Some(Job(job)) };
            shared.state.store(POSTED, SeqCst);
            if shared.parked.swap(false, SeqCst) {
                self.helper.as_ref().expect("running").thread().unpark();
            }
            let wait = Wait(shared);
            ra = a();
            drop(wait);
        }
        // SAFETY: the helper is done (Wait saw DONE) and left `panic` for this side.
        if let Some(panic) = unsafe { (*shared.panic.get()).take() } {
            resume_unwind(panic);
        }
        (ra, rb.expect("the helper ran the job"))
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.shared.state.store(STOP, SeqCst);
        if let Some(helper) = self.helper.take() {
            helper.thread().unpark();
            let _ = helper.join();
        }
    }
}

/// Waits for the posted job to be done, also when the forking thread's own half panics.
struct Wait<'a>(&'a Shared);

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        wait_for_helper(self.0);
        self.0.state.store(IDLE, Relaxed);
    }
}

/// Spins until the helper reports its job done. Never inlined, so that a profile shows the time the
/// forking thread waits under this name (inlined, it was charged to whichever caller forked).
#[inline(never)]
fn wait_for_helper(shared: &Shared) {
    while shared.state.load(Acquire) != DONE {
        std::hint::spin_loop();
    }
}

/// The helper's loop: wait for a job (spinning, then parked), run it, report it done.
fn help(shared: &Shared) {
    super::mark_helper_thread();
    while wait_for_job(shared) {
        // SAFETY: POSTED hands `job` to this thread (see `Shared`).
        let Job(job) = unsafe { (*shared.job.get()).take() }.expect("a posted job");
        // SAFETY: the forking thread keeps the closure alive until it sees DONE.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)() }));
        if let Err(panic) = outcome {
            // SAFETY: the forking thread reads `panic` only after DONE.
            unsafe { *shared.panic.get() = Some(panic) };
        }
        shared.state.store(DONE, Release);
    }
}

/// Spins, then parks, until a job is posted (true) or the pair stops (false). Never inlined, so that a
/// profile shows the helper's idle time under this name.
#[inline(never)]
fn wait_for_job(shared: &Shared) -> bool {
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        match shared.state.load(Acquire) {
            POSTED => return true,
            STOP => return false,
            _ => {}
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && idle_since.elapsed() >= SPIN_FOR {
            shared.parked.store(true, SeqCst);
            // A job posted before `parked` was set found it false and did not unpark: look again.
            if shared.state.load(SeqCst) == IDLE {
                thread::park();
            }
            shared.parked.store(false, SeqCst);
            idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_half_runs_on_the_helper_and_both_results_come_back() {
        let pair = Pair::new();
        let here = thread::current().id();
        for i in 0..1000u64 {
            let (a, (b, there)) = pair.join(|| i * 2, || (i * 3, thread::current().id()));
            assert_eq!((a, b), (i * 2, i * 3));
            assert_ne!(there, here);
        }
    }

    #[test]
    fn a_parked_helper_wakes_for_the_next_job() {
        let pair = Pair::new();
        for _ in 0..3 {
            thread::sleep(SPIN_FOR * 5);
            assert_eq!(pair.join(|| 1, || 2), (1, 2));
        }
    }

    #[test]
    fn a_panic_on_either_side_reaches_the_caller_and_the_pair_goes_on() {
        let pair = Pair::new();
        let helper_side = catch_unwind(AssertUnwindSafe(|| pair.join(|| 1, || panic!("in b"))));
        assert_eq!(
            helper_side.unwrap_err().downcast_ref::<&str>(),
            Some(&"in b")
        );
        let finished = AtomicBool::new(false);
        let caller_side = catch_unwind(AssertUnwindSafe(|| {
            pair.join(
                || panic!("in a"),
                || {
                    thread::sleep(Duration::from_millis(20));
                    finished.store(true, SeqCst);
                },
            )
        }));
        assert!(caller_side.is_err());
        assert!(
            finished.load(SeqCst),
            "the caller waited for the helper before unwinding"
        );
        assert_eq!(pair.join(|| "a", || "b"), ("a", "b"));
    }
}
