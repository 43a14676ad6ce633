//! Saved models through the binary: eval agrees with the training run, predict with eval, and the
//! exported archive holds the checkpoint's parameters bit for bit.

mod common;

use std::fs;
use std::path::Path;

use common::{mlp, read_csv, stderr, stdout, write_toy_dataset};
use mlp::checkpoint::Checkpoint;

const SPEC: &str = "linear,fc1,16,12,0.1; relu,r; linear,fc2,12,4,0.1";

fn trained() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    write_toy_dataset(&dir.path().join("data"), 400, 90, 4);
    let args = [
        "train",
        "-q",
        "--data",
        "data",
        "--layer",
        SPEC,
        "--batch-size",
        "40",
        "--max-epoch",
        "3",
        "--lr",
        "0.1",
        "--out",
        "run",
    ];
    let out = mlp(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

fn summary_value(run: &Path, column: &str) -> String {
    let (header, rows) = read_csv(&run.join("summary.csv"));
    rows[0][header.iter().position(|h| h == column).unwrap()].clone()
}

/// The confusion matrix of a CSV as written by `mlp eval`.
fn confusion(path: &Path) -> Vec<Vec<usize>> {
    let (_, rows) = read_csv(path);
    rows.iter()
        .map(|r| r[1..].iter().map(|c| c.parse().unwrap()).collect())
        .collect()
}

#[test]
fn eval_reproduces_the_final_test_numbers_and_predict_agrees() {
    let dir = trained();
    let d = dir.path();
    let out = mlp(d, &["eval", "run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = stdout(&out);
    let test_loss: f64 = summary_value(&d.join("run"), "test_loss").parse().unwrap();
    let test_acc: f64 = summary_value(&d.join("run"), "test_acc").parse().unwrap();
    assert!(
        report.starts_with(&format!(
            "test loss {test_loss:.5}, accuracy {test_acc:.5} ("
        )),
        "{report}"
    );
    let matrix = confusion(&d.join("run/confusion.csv"));
    let total: usize = matrix.iter().flatten().sum();
    let correct: usize = (0..4).map(|k| matrix[k][k]).sum();
    assert_eq!(total, 90);
    assert_eq!(
        correct as f64 / total as f64,
        test_acc,
        "eval's accuracy is the training run's, exactly"
    );
    assert!(report.contains("per-class accuracy"));

    // predict over the test images gives eval's matrix.
    let out = mlp(
        d,
        &["predict", "run", "data/t10k-images-idx3-ubyte", "--csv"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "file,index,class,p_0,p_1,p_2,p_3");
    let labels = mlp::idx::read_idx(&d.join("data/t10k-labels-idx1-ubyte"), 1)
        .unwrap()
        .data;
    let mut predicted = vec![vec![0usize; 4]; 4];
    let mut classes = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[1], i.to_string());
        let class: usize = cells[2].parse().unwrap();
        let p: Vec<f64> = cells[3..].iter().map(|c| c.parse().unwrap()).collect();
        assert!(
            (p.iter().sum::<f64>() - 1.0).abs() < 1e-4,
            "probabilities sum to 1: {line}"
        );
        assert!(
            p.iter().all(|&x| x <= p[class]),
            "the class has the largest probability: {line}"
        );
        predicted[labels[i] as usize][class] += 1;
        classes.push(class);
    }
    assert_eq!(predicted, matrix);

    // The same image as a PGM gets the same class.
    let images = mlp::idx::read_idx(&d.join("data/t10k-images-idx3-ubyte"), 3)
        .unwrap()
        .data;
    for i in [0usize, 5, 17] {
        let mut pgm = b"P5\n4 4\n255\n".to_vec();
        pgm.extend_from_slice(&images[i * 16..(i + 1) * 16]);
        fs::write(d.join(format!("img{i}.pgm")), pgm).unwrap();
        let out = mlp(d, &["predict", "run", &format!("img{i}.pgm")]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).starts_with(&format!("img{i}.pgm[0]: {}  (0:", classes[i])),
            "{}",
            stdout(&out)
        );
    }
}

/// Reads the entries of an uncompressed zip by walking its local headers.
fn unzip_stored(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let mut entries = Vec::new();
    let mut at = 0;
    while u32_at(at) == 0x04034b50 {
        assert_eq!(u16_at(at + 8), 0, "stored, not compressed");
        let (crc, size, name_len, extra) = (
            u32_at(at + 14),
            u32_at(at + 18),
            u16_at(at + 26),
            u16_at(at + 28),
        );
        let name = String::from_utf8(bytes[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let start = at + 30 + name_len + extra;
        let data = bytes[start..start + size].to_vec();
        assert_eq!(crc32fast::hash(&data) as usize, crc, "{name}");
        entries.push((name, data));
        at = start + size;
    }
    assert_eq!(
        u32_at(at),
        0x02014b50,
        "the central directory follows the entries"
    );
    entries
}

#[test]
fn export_writes_the_parameters_as_npz() {
    let dir = trained();
    let d = dir.path();
    let out = mlp(d, &["export", "run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ckpt = Checkpoint::load(&d.join("run/model.ckpt")).unwrap();
    let entries = unzip_stored(&fs::read(d.join("run/weights.npz")).unwrap());
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "fc1.weight.npy",
            "fc1.bias.npy",
            "fc2.weight.npy",
            "fc2.bias.npy"
        ]
    );
    for ((_, npy), (info, (values, _))) in entries
        .iter()
        .zip(ckpt.header.tensors.iter().zip(&ckpt.data))
    {
        assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        let header = std::str::from_utf8(&npy[10..10 + header_len]).unwrap();
        let shape = format!("'shape': ({}, {})", info.shape[0], info.shape[1]);
        assert!(
            header.contains("'descr': '<f4'") && header.contains(&shape),
            "{header}"
        );
        let data: Vec<f32> = npy[10 + header_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(&data, values, "{}: bit-identical parameters", info.name);
    }
}

#[test]
fn saved_model_errors_are_one_line() {
    let dir = trained();
    let d = dir.path();
    fs::write(d.join("big.pgm"), b"P5 5 5 255\n0000000000000000000000000").unwrap();
    fs::write(d.join("junk"), b"hello").unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["eval", "data"],
            1,
            "error: data: not a run folder (no config.json)",
        ),
        (
            vec!["predict", "run", "big.pgm"],
            1,
            "error: big.pgm: a 5x5 image; the model takes 16 pixels",
        ),
        (
            vec!["predict", "run", "junk"],
            1,
            "error: junk: expected IDX magic number 0x00000803",
        ),
        (
            vec!["predict", "run", "data/train-labels-idx1-ubyte"],
            1,
            "error: data/train-labels-idx1-ubyte: expected IDX magic number",
        ),
        (
            vec!["export", "run", "--format", "onnx"],
            2,
            "error: invalid value 'onnx' for '--format <FORMAT>'",
        ),
    ];
    for (args, code, expected) in cases {
        common::assert_error(d, &args, code, expected);
    }
    fs::write(
        d.join("run/model.ckpt"),
        b"MLPCKPT\0garbage that is not a checkpoint", /* "garb" read as the version */
    )
    .unwrap();
    let out = mlp(d, &["eval", "run"]);
    assert!(
        stderr(&out).starts_with(
            "error: run/model.ckpt: checkpoint format version 1651663207; this mlp reads version 1"
        ),
        "{}",
        stderr(&out)
    );
}
