//! A split's parts handed out from both ends: the forking thread takes parts from the front, the
//! helper from the back, each claiming the next one when it is done with the last, until they meet.
//!
//! The two vCPUs of this machine often run at different speeds for a whole run (presumably a sibling
//! hyperthread busy with another tenant's work): timing each thread's half of every fork of MLP2's epoch, one
//! thread's halves took 1.3-1.5x the other's in two runs out of four, the slow one being the main
//! thread in one and the helper in the other, and the product waits for the slower half. Claimed
//! this way, a slower core takes fewer parts. With equally fast cores the two meet near the middle,
//! where fixed halves would split, so each core still works on about the rows it had before.
//!
//! The parts are the same as [`super::for_row_parts_with`]'s whichever thread takes them, each with its
//! own extra, so the results do not depend on who ran what.

use std::sync::{Mutex, PoisonError};

use super::Rows;

/// The parts not yet claimed: `rows` holds parts `next..end` (part `p` is the rows from `p · height`
/// of the whole), `extras` their extras.
struct Unclaimed<'a, R, T> {
    rows: Option<R>,
    extras: &'a mut [T],
    next: usize,
    end: usize,
}

/// Runs `work(first_row, part, extra)` on each part of `height` rows of `out` (the last may be
/// shorter), the parts claimed from the front here and from the back on the other thread of
/// [`super::join`].
pub(super) fn claim_from_both_ends<R: Rows, T: Send>(
    out: R,
    height: usize,
    extras: &mut [T],
    work: &(impl Fn(usize, R, &mut T) + Sync),
) {
    let parts = out.nrows().div_ceil(height);
    let unclaimed = Mutex::new(Unclaimed {
        rows: Some(out),
        extras,
        next: 0,
        end: parts,
    });
    let side = |from_back: bool| {
        while let Some((p, part, extra)) = claim(&unclaimed, height, from_back) {
            work(p * height, part, extra);
        }
    };
    super::join(|| side(false), || side(true));
}

/// The next part from the front or the back with its extra and its index, if any is left.
fn claim<'a, R: Rows, T>(
    unclaimed: &Mutex<Unclaimed<'a, R, T>>,
    height: usize,
    from_back: bool,
) -> Option<(usize, R, &'a mut T)> {
    let mut left = unclaimed.lock().unwrap_or_else(PoisonError::into_inner);
    if left.next == left.end {
        return None;
    }
    let rows = left.rows.take().expect("rows while parts are left");
    let extras = std::mem::take(&mut left.extras);
    let (p, part, extra, rest, rest_extras);
    if from_back {
        p = left.end - 1;
        let before = p - left.next;
        (rest, part) = rows.split_rows(before * height);
        let (front, back) = extras.split_at_mut(before);
        (rest_extras, extra) = (front, &mut back[0]);
        left.end = p;
    } else {
        p = left.next;
        let rows_in_part = height.min(rows.nrows());
        (part, rest) = rows.split_rows(rows_in_part);
        let (own, back) = extras.split_first_mut().expect("an extra per part");
        (extra, rest_extras) = (own, back);
        left.next = p + 1;
    }
    left.rows = Some(rest);
    left.extras = rest_extras;
    Some((p, part, extra))
}

#[cfg(test)]
mod tests {
    use super::super::{for_row_parts_with, with_helper};
    use ndarray::Array2;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::thread;
    use std::time::Duration;

    /// Every part once, with its own rows and extra, whichever end it went from; a slow helper takes
    /// fewer parts than the main thread.
    #[test]
    fn each_part_once_and_a_slow_thread_takes_fewer() {
        for (rows, height) in [(10, 3), (16, 2), (7, 7), (1, 4)] {
            let mut m = Array2::<usize>::zeros((rows, 1));
            let parts = rows.div_ceil(height);
            let mut extras = vec![usize::MAX; parts + 1];
            let on_helper = AtomicUsize::new(0);
            let main = thread::current().id();
            with_helper(|| {
                for_row_parts_with(
                    m.view_mut(),
                    height,
                    &mut extras,
                    &|first, mut part, extra| {
                        if thread::current().id() != main {
                            on_helper.fetch_add(1, Relaxed);
                            thread::sleep(Duration::from_millis(20));
                        }
                        *extra = first;
                        for (i, mut row) in part.rows_mut().into_iter().enumerate() {
                            row[0] += first + i + 1;
                        }
                    },
                )
            });
            for (i, row) in m.rows().into_iter().enumerate() {
                assert_eq!(row[0], i + 1, "{rows} rows by {height}: row {i}");
            }
            let firsts: Vec<usize> = (0..parts).map(|p| p * height).collect();
            assert_eq!(extras[..parts], firsts[..], "{rows} by {height}");
            assert_eq!(extras[parts], usize::MAX, "the spare extra is left alone");
            if parts >= 4 {
                let helper = on_helper.load(Relaxed);
                assert!(
                    helper < parts / 2,
                    "the slow helper took {helper} of {parts} parts"
                );
            }
        }
    }
}
