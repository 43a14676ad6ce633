//! Fixtures shared by the integration tests: a small synthetic data set and a runner for the real binary.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mlp::idx::encode;

/// `mlp train` on data in the current folder, one epoch, quietly; a test appends the rest.
pub const TRAIN_HERE: [&str; 6] = ["train", "-q", "--data", ".", "--max-epoch", "1"];

/// The bundled MNIST folder.
pub fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Writes an easy data set into `dir`: images of 4x4 pixels, `classes` classes, where class `c` lights
/// pixel row `c % 4` brightly over a noisy background. `train` and `test` images.
pub fn write_toy_dataset(dir: &Path, train: usize, test: usize, classes: usize) {
    let make = |n: usize, salt: usize| {
        let mut pixels = Vec::with_capacity(n * 16);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = (i * 7 + salt) % classes;
            for p in 0..16 {
                let noise = ((i * 31 + p * 17 + salt) % 97) as u8;
                let bright = p / 4 == class % 4 && (p % 4) * classes / 4 <= class;
                pixels.push(if bright { 200 + noise / 2 } else { noise });
            }
            labels.push(class as u8);
        }
        (encode(&[n, 4, 4], &pixels), encode(&[n], &labels))
    };
    let (train_images, train_labels) = make(train, 0);
    let (test_images, test_labels) = make(test, 3);
    fs::write(dir.join("train-images-idx3-ubyte"), train_images).unwrap();
    fs::write(dir.join("train-labels-idx1-ubyte"), train_labels).unwrap();
    fs::write(dir.join("t10k-images-idx3-ubyte"), test_images).unwrap();
    fs::write(dir.join("t10k-labels-idx1-ubyte"), test_labels).unwrap();
}

/// Runs the `mlp` binary with `args` in `cwd`, stdin closed.
pub fn mlp(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the mlp binary runs")
}

/// Asserts that `mlp ARGS` (run in `cwd`) fails with exit status `code` and one line on stderr that
/// starts with `expected`, and no panic.
pub fn assert_error(cwd: &Path, args: &[&str], code: i32, expected: &str) {
    assert_output_error(&mlp(cwd, args), code, expected, &format!("{args:?}"));
}

/// [`assert_error`] on an output already at hand; `what` names the case in a failure.
pub fn assert_output_error(out: &Output, code: i32, expected: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert!(
        err.starts_with(expected),
        "{what}\n  got:  {err}\n  want: {expected}..."
    );
    assert_eq!(err.lines().count(), 1, "{what}: one line, got {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of a CSV file as string records, header excluded, and the header.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Writes the first `n` MNIST training images (and all test images) as a data set of its own.
pub fn write_mnist_subset(dir: &Path, n: usize) {
    use mlp::idx::read_idx;
    fs::create_dir_all(dir).unwrap();
    let src = mnist_dir();
    let images = read_idx(&src.join("train-images-idx3-ubyte.gz"), 3).unwrap();
    let labels = read_idx(&src.join("train-labels-idx1-ubyte.gz"), 1).unwrap();
    fs::write(
        dir.join("train-images-idx3-ubyte"),
        encode(&[n, 28, 28], &images.data[..n * 784]),
    )
    .unwrap();
    fs::write(
        dir.join("train-labels-idx1-ubyte"),
        encode(&[n], &labels.data[..n]),
    )
    .unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        fs::copy(src.join(f), dir.join(f)).unwrap();
    }
}

/// `work` run on one, two, three and eight threads, each result named.
pub fn on_every_thread_count<R: Send>(work: impl Fn() -> R + Sync) -> Vec<(&'static str, R)> {
    let pool = |threads| mlp::kernels::Pool::new(threads).unwrap();
    vec![
        ("one thread", pool(1).install(&work)),
        ("two threads", pool(2).install(&work)),
        ("three threads", pool(3).install(&work)),
        ("eight threads", pool(8).install(&work)),
    ]
}
