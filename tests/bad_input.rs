//! Bad input of every kind, through the real binary: each gets its exit status and one line whose start
//! is asserted exactly, and none may panic. Layer specs and flags are usage errors (2); data files are
//! errors of the data (1).

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use common::{TRAIN_HERE, mlp, stderr, write_toy_dataset};
use flate2::Compression;
use flate2::write::GzEncoder;
use mlp::idx::encode;

/// The toy data: 16 pixels, 4 classes; this spec fits it.
const FIT: &str = "linear,fc1,16,8,0.1; relu,r; linear,fc2,8,4,0.1";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn check(cwd: &Path, args: &[&str], code: i32, expected: &str) {
    common::assert_error(cwd, args, code, expected);
}

#[test]
fn bad_layer_specs() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    let cases: &[(&str, &str)] = &[
        ("", "error: the layer spec is empty"),
        (";;", "error: the layer spec is empty"),
        (
            "linear,fc1,16,4,0.1; relu,a\u{7}b",
            "error: layer 2 \"relu,a\u{7}b\": the layer name must be printable",
        ),
        (
            "relu,r",
            "error: the layer spec \"relu,r\" has no linear layer",
        ),
        (
            "conv,c,16,4,0.1",
            "error: layer 1 \"conv,c,16,4,0.1\": unknown layer kind \"conv\"",
        ),
        (
            "linear,fc,16,4",
            "error: layer 1 \"linear,fc,16,4\": linear takes 5 fields",
        ),
        (
            "linear,fc,16,4,0.1,9",
            "error: layer 1 \"linear,fc,16,4,0.1,9\": linear takes 5 fields",
        ),
        (
            "linear,fc,16,4,0.1; relu",
            "error: layer 2 \"relu\": relu takes 2 fields",
        ),
        (
            "linear,fc,sixteen,4,0.1",
            "error: layer 1 \"linear,fc,sixteen,4,0.1\": input \"sixteen\" is not a whole number",
        ),
        (
            "linear,fc,16,-4,0.1",
            "error: layer 1 \"linear,fc,16,-4,0.1\": output \"-4\" is not a whole number",
        ),
        (
            "linear,fc,NaN,4,0.1",
            "error: layer 1 \"linear,fc,NaN,4,0.1\": input \"NaN\" is not a whole number",
        ),
        (
            "linear,fc,16,0,0.1",
            "error: layer 1 \"linear,fc,16,0,0.1\": output must be at least 1, got 0",
        ),
        (
            "linear,fc,16,4,NaN",
            "error: layer 1 \"linear,fc,16,4,NaN\": std must be a finite number > 0, got NaN",
        ),
        (
            "linear,fc,16,4,-1",
            "error: layer 1 \"linear,fc,16,4,-1\": std must be a finite number > 0, got -1",
        ),
        (
            "linear,fc,16,4,0",
            "error: layer 1 \"linear,fc,16,4,0\": std must be a finite number > 0, got 0",
        ),
        (
            "linear,fc,16,4,x",
            "error: layer 1 \"linear,fc,16,4,x\": std \"x\" is not a number",
        ),
        (
            "linear,fc1,16,8,0.1; linear,fc2,9,4,0.1",
            "error: layer 2 \"linear,fc2,9,4,0.1\": input 9 does not match the previous output 8",
        ),
        (
            "linear,fc,784,4,0.1",
            "error: layer 1 \"linear,fc,784,4,0.1\": input 784 does not match the data's input width 16",
        ),
        (
            "linear,fc,16,10,0.1",
            "error: layer 1 \"linear,fc,16,10,0.1\": output 10 does not match the 4 classes in the data",
        ),
        (
            "linear,fc,16,4,0.1; relu,fc",
            "error: layer 2 \"relu,fc\": name \"fc\" is already used by layer 1",
        ),
        (
            "linear,,16,4,0.1",
            "error: layer 1 \"linear,,16,4,0.1\": the layer name is empty",
        ),
        // Would need about 12 TB for weights, gradients and velocities: refused before any allocation.
        (
            "linear,a,16,1000000,0.1; linear,b,1000000,1000000,0.1; linear,c,1000000,4,0.1",
            "error: layer 2 \"linear,b,1000000,1000000,0.1\": the network would hold more than 268435456 parameters",
        ),
        (
            "linear,fc,16,4294967296,0.1",
            "error: layer 1 \"linear,fc,16,4294967296,0.1\": output 4294967296 is larger than the 16777216",
        ),
    ];
    for (spec, expected) in cases {
        check(
            dir.path(),
            &[&TRAIN_HERE[..], &["--layer", spec]].concat(),
            2,
            expected,
        );
    }
}

#[test]
fn bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--batch-size", "0"],
            "error: --batch-size: must be at least 1, got 0",
        ),
        (
            &["--batch-size", "-5"],
            "error: invalid value '-5' for '--batch-size <N>'",
        ),
        (
            &["--batch-size", "101"],
            "error: --batch-size: 101 is larger than the 100 training images in .",
        ),
        (
            &["--batch-size", "ten"],
            "error: invalid value 'ten' for '--batch-size <N>'",
        ),
        (
            &["--lr", "-0.01"],
            "error: --lr: must be a number >= 0, got -0.01",
        ),
        (
            &["--lr", "NaN"],
            "error: --lr: must be a number >= 0, got NaN",
        ),
        (
            &["--lr", "inf"],
            "error: --lr: must be a number >= 0, got inf",
        ),
        (
            &["--lr", "fast"],
            "error: invalid value 'fast' for '--lr <LR>'",
        ),
        (
            &["--momentum", "1"],
            "error: --momentum: must be a number in [0, 1), got 1",
        ),
        (
            &["--momentum", "-0.5"],
            "error: --momentum: must be a number in [0, 1), got -0.5",
        ),
        (
            &["--weight-decay", "-1e-4"],
            "error: --weight-decay: must be a number >= 0, got -0.0001",
        ),
        (
            &["--max-epoch", "0"],
            "error: --max-epoch: must be at least 1, got 0",
        ),
        (
            &["--test-epoch", "0"],
            "error: --test-epoch: must be at least 1, got 0",
        ),
        (
            &["--disp-freq", "0"],
            "error: --disp-freq: must be at least 1, got 0",
        ),
        (
            &["--threads", "0"],
            "error: --threads: must be at least 1, got 0",
        ),
        (
            &["--seed", "-1"],
            "error: invalid value '-1' for '--seed <N>'",
        ),
        (
            &["--loss", "hinge"],
            "error: invalid value 'hinge' for '--loss <LOSS>'",
        ),
        (
            &["--input-path", "gpu"],
            "error: invalid value 'gpu' for '--input-path <PATH>'",
        ),
        (&["--name", " "], "error: --name: must not be empty"),
        (&["--bogus"], "error: unexpected argument '--bogus' found"),
    ];
    for (extra, expected) in cases {
        let args = [&[&TRAIN_HERE[..], &["--layer", FIT]].concat()[..], extra].concat();
        check(dir.path(), &args, 2, expected);
    }
    check(
        dir.path(),
        &["bench", "--epochs", "0", "--data", ".", "--layer", FIT],
        2,
        "error: --epochs: must be at least 1, got 0",
    );
    check(
        dir.path(),
        &["frobnicate"],
        2,
        "error: unrecognized subcommand 'frobnicate'",
    );
}

/// Each case breaks one file of an otherwise good toy data set.
#[test]
fn bad_data_files() {
    let good = |n: usize| {
        let images = encode(&[n, 4, 4], &vec![7u8; n * 16]);
        let labels = encode(&[n], &(0..n).map(|i| (i % 4) as u8).collect::<Vec<_>>());
        (images, labels)
    };
    let (train_images, _) = good(100);
    let mut trailing = train_images.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let gz = gzip(&train_images);
    let mut corrupt_gz = gz.clone();
    let middle = corrupt_gz.len() / 2;
    corrupt_gz[middle..middle + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let mut two_dims = train_images.clone();
    two_dims[3] = 2;

    let images = "train-images-idx3-ubyte";
    let labels = "t10k-labels-idx1-ubyte";
    type Case = (&'static str, &'static str, Vec<u8>, String);
    let cases: Vec<Case> = vec![
        ("empty", images, vec![], "the file is empty, expected an IDX file".into()),
        ("labels magic", images, encode(&[100], &[0; 100]), "expected IDX magic number 0x00000803 (images: unsigned bytes in 3 dimensions), got 0x00000801".into()),
        ("two dimensions", images, two_dims, "expected IDX magic number 0x00000803 (images: unsigned bytes in 3 dimensions), got 0x00000802".into()),
        ("not IDX", images, b"P5\n28 28\n255\n".to_vec(), "expected IDX magic number 0x00000803".into()),
        ("short header", images, vec![0, 0, 8, 3, 0, 0], "the header ends before the size of dimension 1".into()),
        ("claims more", images, encode(&[1000, 4, 4], &[1; 1600]), "truncated: the header promises 16000 bytes of data (1000x4x4), the file holds 1600".into()),
        ("trailing", images, trailing, "3 trailing bytes after the 1600 bytes of data the header describes (100x4x4)".into()),
        ("corrupt gzip", images, corrupt_gz, "gzip data is corrupt".into()),
        ("truncated gzip", images, gz[..gz.len() / 2].to_vec(), "gzip data is corrupt".into()),
        ("label out of range", labels, encode(&[20], &[9; 20]), "label 9 at index 0 is outside the 4 classes (0..=3) of the training labels".into()),
        ("label count", labels, encode(&[19], &[0; 19]), "19 labels for the 20 images of".into()),
        ("no images", images, encode(&[0, 4, 4], &[]), "holds no pixels (0 images of 16 pixels)".into()),
        ("other width", "t10k-images-idx3-ubyte", encode(&[20, 5, 5], &[1; 500]), "test images have 25 pixels each, training images 16".into()),
    ];
    for (what, file, bytes, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_toy_dataset(dir.path(), 100, 20, 4);
        fs::write(dir.path().join(file), bytes).unwrap();
        let path = dir.path().join(file);
        let want = format!(
            "error: {}: {expected}",
            path.strip_prefix(dir.path())
                .map(|_| format!("./{file}"))
                .unwrap()
        );
        let out = mlp(dir.path(), &[&TRAIN_HERE[..], &["--layer", FIT]].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.starts_with(&want),
            "{what}\n  got:  {err}\n  want: {want}..."
        );
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
    }

    // A directory, a missing file, an unreadable file, a missing folder.
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    let args = [&TRAIN_HERE[..], &["--layer", FIT]].concat();
    fs::remove_file(dir.path().join(images)).unwrap();
    fs::create_dir(dir.path().join(images)).unwrap();
    check(
        dir.path(),
        &args,
        1,
        "error: ./train-images-idx3-ubyte: is a directory, expected an IDX file",
    );
    fs::remove_dir(dir.path().join(images)).unwrap();
    check(
        dir.path(),
        &args,
        1,
        "error: .: no train-images-idx3-ubyte or train-images-idx3-ubyte.gz in the data folder",
    );
    // Reading /proc/self/mem from offset 0 fails (as root too, where permissions would not).
    std::os::unix::fs::symlink("/proc/self/mem", dir.path().join(images)).unwrap();
    check(
        dir.path(),
        &args,
        1,
        "error: ./train-images-idx3-ubyte: Input/output error",
    );
    check(
        dir.path(),
        &["train", "--data", "missing"],
        1,
        "error: missing: data folder not found",
    );
}

#[test]
fn bad_output_folders() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    fs::write(dir.path().join("file"), "").unwrap();
    let args = [&TRAIN_HERE[..], &["--layer", FIT, "--out"]].concat();
    check(
        dir.path(),
        &[&args[..], &["file/run"]].concat(),
        1,
        "error: file/run: Not a directory",
    );
    check(
        dir.path(),
        &[&args[..], &["/proc/mlp-run"]].concat(),
        1,
        "error: /proc/mlp-run:",
    );
}

#[test]
fn a_full_disk_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    fs::create_dir(dir.path().join("run")).unwrap();
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", dir.path().join("run/config.json.tmp")).unwrap();
    let args = [&TRAIN_HERE[..], &["--layer", FIT, "--out", "run"]].concat();
    check(
        dir.path(),
        &args,
        1,
        "error: run/config.json: No space left on device",
    );
}

/// A resumed run is checked as a new one is: an edited config.json is refused before any file is
/// touched, flags that would change the numbers are refused by name, and a folder that holds no run
/// says so.
#[test]
fn resume_checks_its_config_and_refuses_other_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 100, 20, 4);
    let out = mlp(
        d,
        &[
            "train",
            "-q",
            "--data",
            ".",
            "--layer",
            FIT,
            "--max-epoch",
            "1",
            "--batch-size",
            "20",
            "--out",
            "run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let resume = ["train", "-q", "--resume", "run", "--max-epoch", "2"];
    check(
        d,
        &[
            &resume[..],
            &["--lr", "0.5", "--seed=3", "--layer", FIT, "--overwrite"],
        ]
        .concat(),
        2,
        "error: --resume: continues a run with the settings of its config.json; remove --lr, --seed, --layer, --overwrite",
    );
    let config = d.join("run/config.json");
    let original = fs::read_to_string(&config).unwrap();
    for (from, to, expected) in [
        (
            "\"batch_size\": 20",
            "\"batch_size\": 0",
            "batch_size: must be at least 1, got 0",
        ),
        (
            "\"batch_size\": 20",
            "\"batch_size\": 7",
            "batch_size 7 gives 15 steps an epoch, but the checkpoint is at step 5",
        ),
        (
            "\"momentum\": 0.9",
            "\"momentum\": 1.5",
            "--momentum: must be a number in [0, 1), got 1.5",
        ),
        (
            "\"disp_freq\": 50",
            "\"disp_freq\": 0",
            "--disp-freq: must be at least 1, got 0",
        ),
        (
            "\"test_epoch\": 1",
            "\"test_epoch\": 0",
            "--test-epoch: must be at least 1, got 0",
        ),
        (
            "\"checkpoint_every\": 1",
            "\"checkpoint_every\": 0",
            "--checkpoint-every: must be at least 1, got 0",
        ),
    ] {
        assert!(original.contains(from), "{from} not in {original}");
        fs::write(&config, original.replace(from, to)).unwrap();
        let out = mlp(d, &resume);
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: run/config.json: ") && err.contains(expected),
            "{to}: {err}"
        );
        assert!(
            d.join("run/summary.csv").exists(),
            "{to}: the finished run's summary was removed"
        );
    }
    fs::write(&config, original).unwrap();
    check(
        d,
        &["train", "-q", "--resume", "."],
        2,
        "error: --resume: . is not a run folder (no config.json)",
    );
}

/// A run name is one folder name: it can neither leave the output folder nor read as a flag.
#[test]
fn run_names_are_one_folder_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 100, 20, 4);
    let long = "n".repeat(201);
    for (name, problem) in [
        ("../victim", "must be one folder name"),
        ("a/b", "must be one folder name"),
        (".hidden", "must not start with '.' or '-'"),
        ("-x", "must not start with '.' or '-'"),
        ("tab\there", "must be printable"),
        (long.as_str(), "must be at most 200 bytes"),
    ] {
        let out = mlp(
            d,
            &[
                "train",
                "-q",
                "--data",
                ".",
                "--layer",
                FIT,
                &format!("--name={name}"),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: --name: ") && stderr(&out).contains(problem),
            "{name}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).len() < 200,
            "{name}: echoes too much: {}",
            stderr(&out)
        );
    }
    assert!(!d.join("victim").exists() && !d.join("runs").exists());
}

#[test]
fn clap_errors_name_what_is_missing_and_suggest_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["plot", "runs/a"],
            "error: the following required arguments were not provided: --out <FILE> (see 'mlp plot --help')",
        ),
        (
            &["train", "--loss", "cross_entropy"],
            "error: invalid value 'cross_entropy' for '--loss <LOSS>'; [possible values: mse, ce]",
        ),
        (
            &["train", "--max-epochs", "2"],
            "error: unexpected argument '--max-epochs' found; tip: a similar argument exists: '--max-epoch' (see 'mlp train --help')",
        ),
        (
            &["trian"],
            "error: unrecognized subcommand 'trian'; tip: a similar subcommand exists: 'train' (see 'mlp --help')",
        ),
    ];
    for (args, expected) in cases {
        check(dir.path(), args, 2, expected);
    }
    // Bare `mlp` lists the commands.
    let out = mlp(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for command in [
        "train",
        "bench",
        "summarize",
        "plot",
        "eval",
        "predict",
        "export",
    ] {
        assert!(err.contains(&format!("  {command} ")), "{command} in {err}");
    }
}

#[test]
fn help_says_what_a_user_needs_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let help = common::stdout(&mlp(dir.path(), &["train", "--help"]));
    assert!(!help.contains("[`"), "rustdoc link in --help: {help}");
    assert!(help.contains("model.ckpt"), "{help}");
    for kind in ["tanh,NAME", "leaky_relu,NAME"] {
        assert!(help.contains(kind), "{kind} in {help}");
    }
    for line in help.lines() {
        assert!(line.chars().count() <= 100, "over 100 columns: {line}");
    }
    let grid = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/grid.sh"))
        .arg("--help")
        .output()
        .unwrap();
    let grid_help = common::stdout(&grid);
    assert!(grid_help.contains("smoke test (about 15 s)"), "{grid_help}");
}

/// A data folder `toy/` in `d` (with FIT's shape), and a trained run `run/` on it.
fn trained_run(d: &Path) {
    fs::create_dir_all(d.join("toy")).unwrap();
    write_toy_dataset(&d.join("toy"), 100, 20, 4);
    let out = mlp(
        d,
        &[
            "train",
            "-q",
            "--data",
            "toy",
            "--max-epoch",
            "1",
            "--layer",
            FIT,
            "--out",
            "run",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn files_that_are_not_regular_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_run(d);
    let mkfifo = |path: &Path| {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success(), "mkfifo {}", path.display());
    };
    // A FIFO as a data file, and a symlink loop: both would otherwise block or mislead.
    fs::create_dir(d.join("fifo")).unwrap();
    write_toy_dataset(&d.join("fifo"), 100, 20, 4);
    fs::remove_file(d.join("fifo/train-images-idx3-ubyte")).unwrap();
    mkfifo(&d.join("fifo/train-images-idx3-ubyte"));
    let train = ["train", "-q", "--data", "fifo", "--layer", FIT];
    check(
        d,
        &train,
        1,
        "error: fifo/train-images-idx3-ubyte: is a FIFO (named pipe), expected an IDX file",
    );
    fs::create_dir(d.join("looped")).unwrap();
    write_toy_dataset(&d.join("looped"), 100, 20, 4);
    let labels = d.join("looped/t10k-labels-idx1-ubyte");
    fs::remove_file(&labels).unwrap();
    std::os::unix::fs::symlink("t10k-labels-idx1-ubyte", &labels).unwrap();
    let train = ["train", "-q", "--data", "looped", "--layer", FIT];
    check(
        d,
        &train,
        1,
        "error: looped/t10k-labels-idx1-ubyte: Too many levels of symbolic links",
    );
    std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
    check(
        d,
        &["train", "-q", "--data", "loop", "--layer", FIT],
        1,
        "error: loop: Too many levels of symbolic links",
    );
    // The same for predict's inputs.
    mkfifo(&d.join("digit.pgm"));
    check(
        d,
        &["predict", "run", "digit.pgm"],
        1,
        "error: digit.pgm: is a FIFO (named pipe), expected an IDX or PGM file",
    );
    check(
        d,
        &["predict", "run", "toy"],
        1,
        "error: toy: is a directory",
    );
    // And for the run folder's own files, read by eval, resume and plot.
    fs::remove_file(d.join("run/model.ckpt")).unwrap();
    mkfifo(&d.join("run/model.ckpt"));
    check(
        d,
        &["eval", "run"],
        1,
        "error: run/model.ckpt: is a FIFO (named pipe), expected a checkpoint",
    );
    fs::remove_file(d.join("run/metrics.csv")).unwrap();
    mkfifo(&d.join("run/metrics.csv"));
    check(
        d,
        &["plot", "run", "--out", "x.png"],
        1,
        "error: run/metrics.csv: is a FIFO (named pipe), expected a CSV file",
    );
}

#[test]
fn data_that_cannot_fit_is_named_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 2000, 20, 4);
    // 2000 rows of a ten-million-wide layer: hundreds of GiB of activations.
    let wide = "linear,fc1,16,10000000,0.01; relu,r; linear,fc2,10000000,4,0.01";
    let args = [&TRAIN_HERE[..], &["--layer", wide, "--batch-size", "2000"]].concat();
    check(d, &args, 2, "error: --layer: the run needs about ");
    let err = stderr(&mlp(d, &args));
    assert!(
        err.contains("layer fc1's") && err.contains("GiB of memory available"),
        "{err}"
    );
    // A stray label is named by file, index and value, not blamed on the spec.
    let mut labels = fs::read(d.join("train-labels-idx1-ubyte")).unwrap();
    labels[8 + 5] = 200;
    fs::write(d.join("train-labels-idx1-ubyte"), labels).unwrap();
    check(
        d,
        &[&TRAIN_HERE[..], &["--layer", FIT]].concat(),
        1,
        "error: ./train-labels-idx1-ubyte: label 200 at index 5 is outside the network's 4 outputs (0..=3)",
    );
}

#[test]
fn a_header_that_claims_more_than_the_bytes_is_refused_without_reading_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 100, 20, 4);
    let path = d.join("train-images-idx3-ubyte");
    fs::remove_file(&path).unwrap();
    // 2^32-1 images of 4x4 claimed, 100 given.
    let mut claims = encode(&[100, 4, 4], &[3; 1600]);
    claims[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(d.join("train-images-idx3-ubyte.gz"), gzip(&claims)).unwrap();
    let args = [&TRAIN_HERE[..], &["--layer", FIT]].concat();
    check(
        d,
        &args,
        1,
        "error: ./train-images-idx3-ubyte.gz: the header claims 4294967295x4x4 = 68719476720 bytes of data, more than the 4 GiB",
    );
    // A claim within bounds but beyond the bytes is a truncation, found as the data arrives.
    claims[4..8].copy_from_slice(&(1u32 << 24).to_be_bytes());
    fs::write(d.join("train-images-idx3-ubyte.gz"), gzip(&claims)).unwrap();
    check(
        d,
        &args,
        1,
        "error: ./train-images-idx3-ubyte.gz: truncated: the header promises 268435456 bytes of data (16777216x4x4), the file holds 1600",
    );
}

#[test]
fn saved_model_commands_say_when_a_folder_is_not_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_run(d);
    fs::create_dir(d.join("plain")).unwrap();
    fs::create_dir(d.join("fresh")).unwrap();
    fs::copy(d.join("run/config.json"), d.join("fresh/config.json")).unwrap();
    let not_run = "error: plain: not a run folder (no config.json)";
    check(d, &["eval", "plain"], 1, not_run);
    check(d, &["predict", "plain", "x.pgm"], 1, not_run);
    check(d, &["export", "plain"], 1, not_run);
    check(
        d,
        &["eval", "fresh"],
        1,
        "error: fresh: the run has no model.ckpt",
    );
    check(
        d,
        &["export", "run", "--out", "plain"],
        1,
        "error: plain: is a folder",
    );
    let left: Vec<_> = fs::read_dir(d.join("plain")).unwrap().collect();
    assert!(left.is_empty(), "export left {left:?}");
    assert!(!d.join("plain.tmp").exists());
}

#[test]
fn predict_reads_pgm_however_its_header_is_spaced_and_names_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_run(d);
    fs::write(
        d.join("tight.pgm"),
        b"P5#made by hand\n4 4#size\n255\n0123456789abcdef",
    )
    .unwrap();
    let out = mlp(d, &["predict", "run", "tight.pgm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(common::stdout(&out).starts_with("tight.pgm[0]: "));
    fs::write(d.join("digit.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    check(
        d,
        &["predict", "run", "digit.png"],
        1,
        "error: digit.png: is a PNG image; predict reads IDX images (plain or .gz) and 8-bit PGM",
    );
}

#[test]
fn errors_never_echo_long_input_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 100, 20, 4);
    let long_std = format!("linear,fc1,16,5,0.01{}", "9".repeat(120_000));
    let long_name = format!("linear,fc1,16,4,0.01; relu,{}", "r".repeat(120_000));
    let long_value = format!("{}x", "1".repeat(5000));
    let long_path = "a/".repeat(3000);
    let cases: Vec<Vec<&str>> = vec![
        [&TRAIN_HERE[..], &["--layer", &long_std]].concat(),
        [&TRAIN_HERE[..], &["--layer", &long_name, "--loss", "mse"]].concat(),
        [&TRAIN_HERE[..], &["--lr", &long_value]].concat(),
        vec!["train", "--data", &long_path],
        vec!["eval", &long_path],
        vec!["summarize", &long_path],
    ];
    for args in cases {
        let out = mlp(d, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{:?}", &args[..2]);
        assert!(err.len() < 400, "{} bytes: {}", err.len(), &err[..300]);
        assert!(err.contains("... ("), "the cut says so: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn step_numbers_never_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_toy_dataset(d, 100, 20, 4);
    let huge = u64::MAX.to_string();
    let expected = format!(
        "error: --max-epoch: {huge} epochs of 5 steps would count past the largest step number"
    );
    let train = [
        &TRAIN_HERE[..4],
        &["--layer", FIT, "--batch-size", "20", "--out", "run"],
    ]
    .concat();
    check(
        d,
        &[&train[..], &["--max-epoch", &huge]].concat(),
        2,
        &expected,
    );
    let first = mlp(d, &[&train[..], &["--max-epoch", "1"]].concat());
    assert!(first.status.success(), "{}", stderr(&first));
    let resume = ["train", "-q", "--resume", "run", "--max-epoch", &huge];
    check(d, &resume, 2, &expected);
}

#[test]
fn thread_counts_no_process_can_start_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    for n in ["1025", "100000000"] {
        let args = [&TRAIN_HERE[..], &["--layer", FIT, "--threads", n]].concat();
        check(
            dir.path(),
            &args,
            2,
            &format!("error: --threads: must be at most 1024, got {n}"),
        );
        check(
            dir.path(),
            &["bench", "--threads", n],
            2,
            "error: --threads: must be at most 1024",
        );
    }
}

#[test]
fn resume_needs_the_files_it_continues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_run(d);
    let copy = |name: &str, without: &str| {
        fs::create_dir(d.join(name)).unwrap();
        for entry in fs::read_dir(d.join("run")).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != without {
                fs::copy(&path, d.join(name).join(path.file_name().unwrap())).unwrap();
            }
        }
    };
    copy("no_model", "model.ckpt");
    copy("no_metrics", "metrics.csv");
    fn resume(run: &str) -> [&str; 6] {
        ["train", "-q", "--resume", run, "--max-epoch", "2"]
    }
    check(
        d,
        &resume("no_model"),
        1,
        "error: no_model: the run has no model.ckpt",
    );
    check(
        d,
        &resume("no_metrics"),
        1,
        "error: no_metrics: the run has no metrics.csv, so it cannot be continued",
    );
    assert!(
        d.join("no_metrics/summary.csv").exists(),
        "nothing touched before the checks"
    );
}
