//! The IDX reader and data-set loader on small files written by the tests themselves.

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use mlp::batch::{InputBatch, InputPath};
use mlp::data::Dataset;
use mlp::idx::{decode, encode, read_idx};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn images(count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..count * rows * cols)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    encode(&[count, rows, cols], &data)
}

#[test]
fn plain_and_gzipped_files_decode_the_same() {
    let plain = images(3, 2, 2);
    let a = decode(&plain, 3).unwrap();
    let b = decode(&gzip(&plain), 3).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.dims, vec![3, 2, 2]);
    assert_eq!(a.data[..4], [0, 37, 74, 111]);
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    let good = images(2, 2, 2);
    let mut bad_magic = good.clone();
    bad_magic[3] = 1;
    let mut bad_type = good.clone();
    bad_type[2] = 0x0D;
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    let gz = gzip(&good);
    let mut corrupt_gz = gz.clone();
    let middle = corrupt_gz.len() / 2;
    corrupt_gz[middle] ^= 0xFF;
    corrupt_gz[middle + 1] ^= 0xFF;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "the file is empty"),
        (
            "short header",
            vec![0, 0, 8],
            "the file is 3 bytes long, too short for an IDX header",
        ),
        (
            "labels magic",
            bad_magic,
            "expected IDX magic number 0x00000803 (images: unsigned bytes in 3 dimensions), got 0x00000801",
        ),
        (
            "float type",
            bad_type,
            "expected IDX magic number 0x00000803",
        ),
        (
            "no sizes",
            vec![0, 0, 8, 3, 0, 0, 0, 2],
            "the header ends before the size of dimension 2",
        ),
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "truncated: the header promises 8 bytes of data (2x2x2), the file holds 7",
        ),
        (
            "huge claim",
            encode(&[60000, 28, 28], &[1, 2, 3]),
            "truncated: the header promises 47040000 bytes of data (60000x28x28), the file holds 3",
        ),
        (
            "trailing",
            trailing,
            "3 trailing bytes after the 8 bytes of data the header describes (2x2x2)",
        ),
        (
            "truncated gzip",
            gz[..gz.len() - 10].to_vec(),
            "gzip data is corrupt",
        ),
        ("corrupt gzip", corrupt_gz, "gzip data is corrupt"),
    ];
    for (what, bytes, expected) in cases {
        let err = decode(&bytes, 3).expect_err(what);
        assert!(
            err.starts_with(expected),
            "{what}\n  got:  {err}\n  want: {expected}..."
        );
    }
    let err = decode(&encode(&[4], &[0, 1, 2, 3]), 3).unwrap_err();
    assert!(err.contains("got 0x00000801"), "{err}");
}

#[test]
fn read_idx_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x-idx3-ubyte");
    fs::write(&path, [0u8, 0, 8]).unwrap();
    let err = read_idx(&path, 3).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: the file is 3 bytes long, too short for an IDX header",
            path.display()
        )
    );
    let err = read_idx(dir.path(), 3).unwrap_err().to_string();
    assert!(
        err.ends_with("is a directory, expected an IDX file"),
        "{err}"
    );
    let err = read_idx(&dir.path().join("missing"), 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing: No such file or directory"), "{err}");
}

/// Writes a data set of `train` and `test` images of 2x3 pixels with labels cycling through `classes`.
fn write_dataset(dir: &Path, train: usize, test: usize, classes: u8) {
    let labels = |n: usize| encode(&[n], &(0..n).map(|i| i as u8 % classes).collect::<Vec<_>>());
    fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&images(train, 2, 3)),
    )
    .unwrap();
    fs::write(dir.join("train-labels-idx1-ubyte"), labels(train)).unwrap();
    fs::write(dir.join("t10k-images-idx3-ubyte"), images(test, 2, 3)).unwrap();
    fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels(test))).unwrap();
}

#[test]
fn dataset_takes_width_and_classes_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 12, 5, 4);
    let data = Dataset::load(dir.path()).unwrap();
    assert_eq!((data.input_width(), data.classes), (6, 4));
    // Rows of 3 pixels, the images' last dimension, for the sparse path's squares of pixels.
    assert_eq!(data.train.line, 3);
    assert_eq!((data.train.len(), data.test.len()), (12, 5));
    let mut batch = InputBatch::new(3, 6, InputPath::Dense);
    batch.fill(&data.train, &[1, 0]);
    // image 1 starts with pixel 6 * 37 % 256 = 222: (222 - 128) / 255
    assert_eq!(batch.rows(), 2);
    assert_eq!(batch.dense()[[0, 0]], (222.0 - 128.0) / 255.0);
    assert_eq!(batch.dense()[[1, 0]], -128.0 / 255.0);
    assert_eq!(batch.labels(), &[1, 0]);
    // The sparse form holds the nonzero pixels times 1/255, by pixel. Image 0's first
    // pixel is 0; pixel 1 is 3 in image 1 (batch row 0) and 37 in image 0 (batch row 1).
    let mut sparse = InputBatch::new(3, 6, InputPath::Sparse);
    sparse.fill(&data.train, &[1, 0]);
    let input = sparse.sparse().unwrap();
    let by_pixel = input.by_pixel;
    assert_eq!(
        (by_pixel.nrows(), by_pixel.ncols(), by_pixel.nnz()),
        (6, 2, 11)
    );
    assert_eq!(
        by_pixel.row(0).collect::<Vec<_>>(),
        [(0, 222.0 * (1.0 / 255.0))]
    );
    let pixel_1 = [(0, 3.0 * (1.0 / 255.0)), (1, 37.0 * (1.0 / 255.0))];
    assert_eq!(by_pixel.row(1).collect::<Vec<_>>(), pixel_1);
}

#[test]
fn inconsistent_data_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), 12, 5, 4);
    fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        gzip(&encode(&[4], &[0, 1, 2, 3])),
    )
    .unwrap();
    let err = Dataset::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz: 4 labels for the 5 images of"),
        "{err}"
    );

    fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        gzip(&encode(&[5], &[0, 1, 9, 3, 0])),
    )
    .unwrap();
    let err = Dataset::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.ends_with("label 9 at index 2 is outside the 4 classes (0..=3) of the training labels"),
        "{err}"
    );

    fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    let err = Dataset::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz in the data folder"
        ),
        "{err}"
    );

    let err = Dataset::load(&dir.path().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "data folder not found (give --data DIR with the four MNIST-style IDX files)"
        ),
        "{err}"
    );
}
