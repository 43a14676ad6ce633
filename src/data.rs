//! A labelled image data set in the MNIST layout: a folder with the four standard IDX files.
//!
//! Images stay as raw bytes (47 MB for MNIST's training set instead of 188 MB as f32) and are normalised
//! per batch ([`crate::batch::InputBatch`]). The input width
//! (`rows * cols`) and the number of classes (largest training label + 1) come from the files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::idx::read_idx;

/// The canonical file names; each may also carry a `.gz` suffix.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// One part of a data set (training or test): `len` images of `width` bytes each, and their labels.
#[derive(Debug, Clone)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub width: usize,
    /// Pixels per row of an image (the IDX file's last dimension); `width` when the rows are not known.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub train: Split,
    pub test: Split,
    pub classes: usize,
}

impl Split {
    /// Builds a split from images (`count x width` bytes) and labels, checking that they agree.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, width: usize) -> Self {
        assert_eq!(images.len(), labels.len() * width, "one label per image");
        Split {
            images,
            labels,
            width,
            line: width,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl Dataset {
    /// Loads the four files from `dir` and checks that they fit together.
    pub fn load(dir: &Path) -> Result<Dataset> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            // A symlink loop or a folder that may not be read says so.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(dir, e)),
            _ => {
                return Err(Error::data(
                    dir,
                    "data folder not found (give --data DIR with the four MNIST-style IDX files)",
                ));
            }
        }
        // The two splits decompress at once (a plain thread: the kernels' pool may not exist yet);
        // the training split's error, if any, is the one reported.
        let (train, test) = std::thread::scope(|scope| {
            let test = scope.spawn(|| load_split(dir, TEST_IMAGES, TEST_LABELS));
            let train = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS);
            (train, test.join())
        });
        let train = train?;
        let test = match test {
            Ok(test) => test?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if train.width != test.width {
            return Err(Error::data(
                find(dir, TEST_IMAGES)?,
                format!(
                    "test images have {} pixels each, training images {}",
                    test.width, train.width
                ),
            ));
        }
        let classes = train
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        if let Some((i, &label)) = test
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(Error::data(
                find(dir, TEST_LABELS)?,
                format!(
                    "label {label} at index {i} is outside the {classes} classes (0..={}) of the training labels",
                    classes - 1
                ),
            ));
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            train,
            test,
            classes,
        })
    }

    /// Checks that a network with `outputs` outputs can take every training label; a label beyond them
    /// is named by file, index and value (it is more often a stray byte than a wrong spec).
    pub fn check_labels_fit(&self, outputs: usize) -> Result<()> {
        if self.classes <= outputs {
            return Ok(());
        }
        let (i, label) = (self.train.labels.iter().enumerate())
            .find(|&(_, &l)| l as usize >= outputs)
            .expect("some label reaches the class count");
        Err(Error::data(
            find(&self.dir, TRAIN_LABELS)?,
            format!(
                "label {label} at index {i} is outside the network's {outputs} outputs (0..={}); \
                 fix the label or give the last layer more outputs",
                outputs.saturating_sub(1)
            ),
        ))
    }

    /// Pixels per image.
    pub fn input_width(&self) -> usize {
        self.train.width
    }
}

/// The path of `stem.gz` or `stem` in `dir`, whichever exists (gzipped first).
pub fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let plain = dir.join(stem);
    [gz, plain]
        .into_iter()
        // An entry that is there but cannot be read (a dangling link, a symlink loop) is found, so
        // that reading it says what is wrong.
        .find(|p| p.symlink_metadata().is_ok())
        .ok_or_else(|| Error::data(dir, format!("no {stem} or {stem}.gz in the data folder")))
}

fn load_split(dir: &Path, images_stem: &str, labels_stem: &str) -> Result<Split> {
    let images_path = find(dir, images_stem)?;
    let labels_path = find(dir, labels_stem)?;
    let images = read_idx(&images_path, 3)?;
    let labels = read_idx(&labels_path, 1)?;
    let count = images.dims[0];
    let width = images.dims[1] * images.dims[2];
    if count == 0 || width == 0 {
        return Err(Error::data(
            &images_path,
            format!("holds no pixels ({} images of {width} pixels)", count),
        ));
    }
    if labels.dims[0] != count {
        return Err(Error::data(
            &labels_path,
            format!(
                "{} labels for the {count} images of {}",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    Ok(Split {
        line: images.dims[2],
        ..Split::new(images.data, labels.data, width)
    })
}
