//! Fork-join for the kernels: [`join`], [`threads`] and [`for_row_parts`], which splits an output
//! matrix's rows into parts, handed out by halving with rayon's `join`, or from both ends with a
//! helper thread (no allocation either way).
//!
//! Inside [`with_helper`] (`--threads 2`) a fork goes to a [`Pair`]'s spinning helper thread, the
//! second half of a `join` always to the helper; elsewhere to rayon's `join`, the lightest fork-join
//! rayon has (a `scope` boxes every task it spawns).

mod both_ends;
mod pair;

use std::cell::Cell;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

pub use pair::Pair;

/// What the current thread may fork to.
#[derive(Clone, Copy, PartialEq)]
enum Forks {
    /// rayon's pool.
    Rayon,
    /// The [`Pair`] at this address, installed by [`with_helper`] on this thread.
    Pair(*const Pair),
    /// Nothing: a half already running in parallel (on the helper, or here while it runs the other).
    None,
}

thread_local! {
    static FORKS: Cell<Forks> = const { Cell::new(Forks::Rayon) };
}

/// Runs `work` with a helper thread for this thread's forks, and stops the helper after.
pub fn with_helper<R>(work: impl FnOnce() -> R) -> R {
    let pair = Pair::new();
    let previous = FORKS.replace(Forks::Pair(&pair));
    let _restore = Restore(previous);
    work()
}

/// Puts back what the thread forked to before, panics included.
struct Restore(Forks);

impl Drop for Restore {
    fn drop(&mut self) {
        FORKS.set(self.0);
    }
}

/// Marks the helper thread: its jobs run their own forks in sequence.
fn mark_helper_thread() {
    FORKS.set(Forks::None);
}

/// How many threads a kernel called here should split its work over.
pub fn threads() -> usize {
    match FORKS.get() {
        Forks::Rayon => rayon::current_num_threads(),
        Forks::Pair(_) => 2,
        Forks::None => 1,
    }
}

/// Runs `a` and `b`, in parallel when this thread has somewhere to fork to, and returns both results.
pub fn join<RA: Send, RB: Send>(
    a: impl FnOnce() -> RA + Send,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    match FORKS.get() {
        Forks::Rayon => rayon::join(a, b),
        Forks::None => (a(), b()),
        Forks::Pair(pair) => {
            let _restore = Restore(FORKS.replace(Forks::None));
            // SAFETY: `with_helper` keeps the pair alive while FORKS points to it on this thread.
            unsafe { &*pair }.join(a, b)
        }
    }
}

/// Matrices split by rows together: a view, or a tuple of views with as many rows each (a weight, its
/// gradient and its velocity).
pub trait Rows: Send + Sized {
    fn nrows(&self) -> usize;
    fn split_rows(self, mid: usize) -> (Self, Self);
}

impl<T: Send> Rows for ArrayViewMut2<'_, T> {
    fn nrows(&self) -> usize {
        self.dim().0
    }

    fn split_rows(self, mid: usize) -> (Self, Self) {
        self.split_at(Axis(0), mid)
    }
}

impl<T: Sync> Rows for ArrayView2<'_, T> {
    fn nrows(&self) -> usize {
        self.dim().0
    }

    fn split_rows(self, mid: usize) -> (Self, Self) {
        self.split_at(Axis(0), mid)
    }
}

impl<A: Rows, B: Rows> Rows for (A, B) {
    fn nrows(&self) -> usize {
        let rows = self.0.nrows();
        assert_eq!(self.1.nrows(), rows, "as many rows in each");
        rows
    }

    fn split_rows(self, mid: usize) -> (Self, Self) {
        let ((a0, a1), (b0, b1)) = (self.0.split_rows(mid), self.1.split_rows(mid));
        ((a0, b0), (a1, b1))
    }
}

impl<A: Rows, B: Rows, C: Rows> Rows for (A, B, C) {
    fn nrows(&self) -> usize {
        let rows = self.0.nrows();
        assert!(
            self.1.nrows() == rows && self.2.nrows() == rows,
            "as many rows in each"
        );
        rows
    }

    fn split_rows(self, mid: usize) -> (Self, Self) {
        let ((a0, a1), (b0, b1), (c0, c1)) = (
            self.0.split_rows(mid),
            self.1.split_rows(mid),
            self.2.split_rows(mid),
        );
        ((a0, b0, c0), (a1, b1, c1))
    }
}

/// A matrix whose parts are its columns: [`for_row_parts`] on `Columns(c)` hands out parts of `c`'s
/// columns (`first_row` then counts columns).
pub struct Columns<V>(pub V);

impl<T: Send> Rows for Columns<ArrayViewMut2<'_, T>> {
    fn nrows(&self) -> usize {
        self.0.ncols()
    }

    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (left, right) = self.0.split_at(Axis(1), mid);
        (Columns(left), Columns(right))
    }
}

/// Calls `work(first_row, part)` on consecutive parts of `out` of `height` rows (the last may be
/// shorter), in parallel ([`join`]); `first_row` counts from the start of `out`.
pub fn for_row_parts<R: Rows>(out: R, height: usize, work: &(impl Fn(usize, R) + Sync)) {
    // A Vec of a zero-sized type never allocates.
    let mut nothing = vec![(); parts(out.nrows(), height)];
    for_row_parts_with(out, height, &mut nothing, &|first, part, _| {
        work(first, part)
    });
}

/// [`for_row_parts`] that also hands each part its own element of `extras`, in order (a part's own
/// accumulator); `extras` needs one element per part at least. With the helper thread the parts are
/// claimed from both ends (`both_ends`), with rayon halved by [`join`] down to single parts.
pub fn for_row_parts_with<R: Rows, T: Send>(
    out: R,
    height: usize,
    extras: &mut [T],
    work: &(impl Fn(usize, R, &mut T) + Sync),
) {
    let height = height.max(1);
    assert!(
        extras.len() >= parts(out.nrows(), height),
        "one extra per part"
    );
    match FORKS.get() {
        Forks::Pair(_) if out.nrows() > height => {
            both_ends::claim_from_both_ends(out, height, extras, work)
        }
        _ => split(out, 0, height, extras, work),
    }
}

/// How many parts of `height` rows (the last may be shorter) cover `rows`; one when there are none.
pub fn parts(rows: usize, height: usize) -> usize {
    rows.div_ceil(height.max(1)).max(1)
}

/// Rows per part for a split of `rows` rows that balances itself: [`PARTS_PER_THREAD`] parts per thread
/// (claimed from both ends with a helper thread, stolen by rayon's workers otherwise), rounded up to a
/// multiple of `multiple`; all the rows in one part on one thread.
pub fn balanced_height(rows: usize, multiple: usize) -> usize {
    match threads() {
        1 => rows,
        n => rows.div_ceil(n * PARTS_PER_THREAD),
    }
    .next_multiple_of(multiple.max(1))
}

/// Parts per thread in [`balanced_height`]: enough that a core at two-thirds of the other's speed (as
/// one of this VM's vCPUs often runs for minutes) takes fewer of them instead of making the other
/// wait, few enough that each part is thousands of FMAs. 4 and 16 measured the same as 8 (MLP2,
/// `mlp bench --epochs 2`, 12 alternated runs: 0.965x and 0.956x, within the noise).
pub const PARTS_PER_THREAD: usize = 8;

fn split<R: Rows, T: Send>(
    out: R,
    first: usize,
    height: usize,
    extras: &mut [T],
    work: &(impl Fn(usize, R, &mut T) + Sync),
) {
    let parts = out.nrows().div_ceil(height);
    if parts <= 1 {
        return work(first, out, &mut extras[0]);
    }
    let mid = parts / 2 * height;
    let (top, bottom) = out.split_rows(mid);
    let (top_extras, bottom_extras) = extras.split_at_mut(parts / 2);
    join(
        || split(top, first, height, top_extras, work),
        || split(bottom, first + mid, height, bottom_extras, work),
    );
}

/// What a product does to each row of its output once the row is summed, on the thread that summed it,
/// while the row is in its cache: `(row, first column, the row's elements)`, the row and column counted
/// in the whole output. A layer's activation, or the derivative of the activation before it, applied on
/// the way out instead of in a pass of its own ([`crate::layers::Layer::forward_then`]).
pub type Finish<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// `finish` on every row of `m`, whose first row and column are `first_row` and `first_col` of the
/// whole output. Its rows must be contiguous (every buffer of the network's are).
pub fn finish_rows(mut m: ArrayViewMut2<f32>, first_row: usize, first_col: usize, finish: Finish) {
    for (i, mut row) in m.rows_mut().into_iter().enumerate() {
        let row = row.as_slice_mut().expect("an output with contiguous rows");
        finish(first_row + i, first_col, row);
    }
}

/// `out = first + second`, the two halves of a sum computed at once ([`join`]): `first` writes its
/// half into `out`, `second` into `partial` (grown to `out`'s shape when smaller, rows padded as
/// `layers::padded` pads them), which is then added in, split by rows, each row then given to
/// `finish` if any. For the products split over their inner dimension, so that each core reads only
/// the weight rows that it updates.
///
/// Unpadded, MLP1's partial rows were 256 floats (1 KiB) apart, and a 64-column pass of the sparse
/// forward pass fell into a quarter of the L1 cache's sets: the helper's half took 1.2-1.5x the main
/// thread's. Padded, `mlp bench --epochs 2` on two threads: MLP1's forward fc1 0.060 -> 0.055 s an
/// epoch, its epoch 0.973x (pairwise median of 16 alternated runs).
pub fn sum_in_halves(
    mut out: ArrayViewMut2<f32>,
    partial: &mut Array2<f32>,
    first: impl FnOnce(ArrayViewMut2<f32>) + Send,
    second: impl FnOnce(ArrayViewMut2<f32>) + Send,
    finish: Option<Finish>,
) {
    let (rows, n) = out.dim();
    if partial.nrows() < rows || partial.ncols() != n {
        *partial = crate::layers::padded(rows, n);
    }
    let mut partial = partial.slice_mut(ndarray::s![..rows, ..]);
    join(|| first(out.view_mut()), || second(partial.view_mut()));
    let halves = rows.div_ceil(2);
    for_row_parts(
        (out, partial.view()),
        halves,
        &|first, (mut out, partial)| {
            let Some(finish) = finish else {
                out += &partial;
                return;
            };
            for (i, (mut row, part)) in out.rows_mut().into_iter().zip(partial.rows()).enumerate() {
                row += &part;
                let row = row.as_slice_mut().expect("an output with contiguous rows");
                finish(first + i, 0, row);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn with_a_helper_forks_go_to_it_once_and_nested_forks_run_in_turn() {
        assert_eq!(with_helper(threads), 2);
        let ((outer, inner_threads), helper_threads) = with_helper(|| {
            join(
                || (std::thread::current().id(), threads()),
                || (threads(), join(|| 1, || 2)),
            )
        });
        assert_eq!(outer, std::thread::current().id());
        assert_eq!((inner_threads, helper_threads), (1, (1, (1, 2))));
        // Outside, forks go to rayon again.
        assert_eq!(threads(), rayon::current_num_threads());
    }

    #[test]
    fn every_row_is_visited_once_with_its_index() {
        every_row_once();
        with_helper(every_row_once);
    }

    /// The second half's buffer has rows an odd number of cache lines apart, also for a power-of-two
    /// width, and the sum is right.
    #[test]
    fn the_second_half_sums_into_padded_rows() {
        let mut partial = Array2::zeros((0, 0));
        let mut out = Array2::<f32>::zeros((6, 256));
        with_helper(|| {
            sum_in_halves(
                out.view_mut(),
                &mut partial,
                |mut a| a.fill(1.0),
                |mut b| b.fill(2.0),
                None,
            )
        });
        assert!(out.iter().all(|&x| x == 3.0));
        let stride = partial.strides()[0] as usize;
        assert!(
            stride >= 256 && stride.is_multiple_of(16) && !(stride / 16).is_multiple_of(2),
            "stride {stride}"
        );
    }

    #[test]
    fn each_part_gets_its_own_extra_in_order() {
        for threads_2 in [false, true] {
            let run = || {
                let mut m = Array2::<usize>::zeros((10, 1));
                let mut extras = [usize::MAX; 5];
                for_row_parts_with(m.view_mut(), 3, &mut extras, &|first, part, extra| {
                    *extra = first * 100 + part.nrows();
                });
                extras
            };
            let extras = if threads_2 { with_helper(run) } else { run() };
            // Four parts (3, 3, 3 and 1 rows); the fifth extra is left alone.
            assert_eq!(extras, [3, 303, 603, 901, usize::MAX]);
        }
    }

    fn every_row_once() {
        for (rows, height) in [(10, 3), (10, 10), (10, 20), (1, 1), (7, 2), (0, 4)] {
            let mut m = Array2::<usize>::zeros((rows, 2));
            for_row_parts(m.view_mut(), height, &|first, mut part| {
                assert!(part.nrows() <= height);
                for (i, mut row) in part.rows_mut().into_iter().enumerate() {
                    row[0] += first + i;
                    row[1] += 1;
                }
            });
            for (i, row) in m.rows().into_iter().enumerate() {
                assert_eq!((row[0], row[1]), (i, 1), "{rows} rows by {height}");
            }
        }
    }
}
