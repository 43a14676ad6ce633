//! Splitting an output matrix's rows over rayon's threads by halving with `rayon::join`: no allocation,
//! and the lightest fork-join rayon has (a `scope` boxes every task it spawns).

use ndarray::{ArrayViewMut2, Axis};

/// Calls `work(first_row, part)` on consecutive parts of `out` of `height` rows (the last may be
/// shorter), in parallel; `first_row` counts from the start of `out`.
pub fn for_row_parts<T: Send>(
    out: ArrayViewMut2<T>,
    height: usize,
    work: &(impl Fn(usize, ArrayViewMut2<T>) + Sync),
) {
    split(out, 0, height.max(1), work);
}

fn split<T: Send>(
    out: ArrayViewMut2<T>,
    first: usize,
    height: usize,
    work: &(impl Fn(usize, ArrayViewMut2<T>) + Sync),
) {
    let parts = out.nrows().div_ceil(height);
    if parts <= 1 {
        return work(first, out);
    }
    let mid = parts / 2 * height;
    let (top, bottom) = out.split_at(Axis(0), mid);
    rayon::join(
        || split(top, first, height, work),
        || split(bottom, first + mid, height, work),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn every_row_is_visited_once_with_its_index() {
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
