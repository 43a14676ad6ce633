//! The command line: clap structs, then [`TrainArgs::into_config`] turns raw flags into a checked
//! [`TrainConfig`] before any work starts. [`run`] is `main` without the exit.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::batch::InputPath;
use crate::error::{Error, Result};
use crate::interrupt::StopFlag;
use crate::loss::Loss;
use crate::optim::Sgd;
use crate::output::config::RunConfig;
use crate::output::progress::Mode;
use crate::run::{TrainConfig, run_train};
use crate::spec::NetSpec;
use crate::train::{Settings, Status};

/// The report's headline network, MLP1_ReLU_CE.
pub const DEFAULT_LAYER: &str = "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01";
pub const DEFAULT_SEED: u64 = 2019;
pub const DEFAULT_MAX_EPOCH: usize = 50;

const TRAIN_EXAMPLES: &str = "\
Examples:
  # The report's MLP1_ReLU_CE (the default network), 50 epochs, into runs/MLP1_ReLU_CE/
  mlp train

  # A quick look: two epochs
  mlp train --max-epoch 2

  # MLP2_ReLU_ReLU_MSE from the report's Appendix A, under its Table 3 name
  mlp train --loss mse --name MLP2_ReLU_ReLU_MSE --layer \"linear,fc1,784,500,0.01; relu,relu1;
    linear,fc2,500,256,0.01; relu,relu2; linear,fc3,256,10,0.01; relu,relu3\"

  # Fashion-MNIST (same four file names) with another seed
  mlp train --data ~/fashion-mnist --seed 7 --out runs/fashion-mlp1

Layer spec (the report's -layer grammar): layers separated by ';' or newlines, fields by ','
  linear,NAME,IN,OUT,STD    fully connected, weights ~ N(0, STD^2), biases 0
  relu,NAME                 max(x, 0)
  sigmoid,NAME              1 / (1 + e^-x)

Output folder: metrics.csv (step,epoch,split,lr,loss,acc,time_s), summary.csv, config.json.";

#[derive(Debug, Parser)]
#[command(
    name = "mlp",
    version,
    about = "Train multilayer perceptrons on MNIST-style data from a one-line layer spec",
    long_about = "Train multilayer perceptrons on MNIST-style data from a one-line layer spec, with SGD, \
                  momentum and weight decay, leaving CSV curves and a summary in a run folder."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a network and write metrics.csv, summary.csv and config.json into its run folder
    ///
    /// A flag given twice takes its last value, so scripts can append overrides.
    #[command(after_help = TRAIN_EXAMPLES, args_override_self = true)]
    Train(TrainArgs),

    /// Time training, stage by stage: seconds per epoch for gathering batches, each layer's forward
    /// and backward pass, the loss, the update and the evaluation
    #[command(after_help = BENCH_EXAMPLES, args_override_self = true)]
    Bench(BenchArgs),

    /// Gather the summary.csv of runs into one table: Markdown in the shape of the report's Table 3
    /// on stdout, and the stacked CSV with --csv
    #[command(after_help = SUMMARIZE_EXAMPLES)]
    Summarize(SummarizeArgs),

    /// Draw loss and accuracy curves (or gradient norms, or the sigmoid) as PNG or SVG
    #[command(after_help = PLOT_EXAMPLES)]
    Plot(PlotArgs),

    /// Evaluate a saved model on a test set: loss, accuracy, confusion matrix, per-class accuracy
    #[command(
        after_help = "Examples:\n  mlp eval runs/MLP1_ReLU_CE\n  mlp eval runs/MLP1_ReLU_CE --data ~/other-mnist"
    )]
    Eval(EvalArgs),

    /// Classify images (IDX files or 8-bit PGM of the model's input size) with a saved model
    #[command(
        after_help = "Examples:\n  mlp predict runs/MLP1_ReLU_CE digit.pgm\n  mlp predict runs/MLP1_ReLU_CE data/t10k-images-idx3-ubyte.gz --csv > predictions.csv"
    )]
    Predict(PredictArgs),

    /// Export a saved model's weights as a numpy .npz archive
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  mlp export runs/MLP1_ReLU_CE                 # writes runs/MLP1_ReLU_CE/weights.npz

Then, in Python:
  import numpy as np
  w = np.load(\"runs/MLP1_ReLU_CE/weights.npz\")
  print({name: w[name].shape for name in w})   # fc1.weight (784, 256), fc1.bias (1, 256), ...";

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run folder with model.ckpt
    #[arg(value_name = "RUN")]
    pub run: PathBuf,

    /// Data folder [default: the run's own]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Where to write the confusion matrix [default: RUN/confusion.csv]
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run folder with model.ckpt
    #[arg(value_name = "RUN")]
    pub run: PathBuf,

    /// IDX image files (every image in them) or PGM images
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// CSV on stdout: file,index,class,p_0,...
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run folder with model.ckpt
    #[arg(value_name = "RUN")]
    pub run: PathBuf,

    /// Archive format (npz: numpy's zip of .npy arrays)
    #[arg(long, value_parser = ["npz"], default_value = "npz")]
    pub format: String,

    /// Where to write it [default: RUN/weights.npz]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

const PLOT_EXAMPLES: &str = "\
Examples:
  mlp plot runs/AffNet_MSE runs/AffNet_CE --out fig1.png         # the report's Figure 1
  mlp plot runs/MLP1_* --log-loss --out mlp1.svg
  mlp plot --grad-norms runs/MLP2_Sig_Sig_MSE --out grad-norms.png
  mlp plot --sigmoid --out fig4.png                               # Figure 4";

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run folders (each with a metrics.csv)
    #[arg(value_name = "RUN", required_unless_present = "sigmoid")]
    pub runs: Vec<PathBuf>,

    /// The image to write: .png or .svg
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Loss on a log scale
    #[arg(long)]
    pub log_loss: bool,

    /// Chart each Linear layer's weight-gradient norm (from grad_norms.csv) of one run instead
    #[arg(long, conflicts_with = "sigmoid")]
    pub grad_norms: bool,

    /// Draw the sigmoid and its derivative (the report's Figure 4) instead
    #[arg(long)]
    pub sigmoid: bool,

    /// Average the train rows over windows of N iterations
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub smooth: usize,

    /// Title above the charts [default: the run names]
    #[arg(long)]
    pub title: Option<String>,

    /// Image size in pixels
    #[arg(long, value_name = "WxH", default_value = "1400x560")]
    pub size: String,
}

const SUMMARIZE_EXAMPLES: &str = "\
Examples:
  mlp summarize runs                          # every run folder in runs/
  mlp summarize runs --report                 # beside the report's test accuracies
  mlp summarize runs/MLP1_ReLU_CE runs/MLP2_ReLU_CE --csv table3.csv";

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// Run folders, or folders of run folders
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,

    /// Also write the summaries stacked into one CSV file
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Also write the Markdown table to a file
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Add the report's Table 3 test accuracy and our difference from it
    #[arg(long)]
    pub report: bool,
}

const BENCH_EXAMPLES: &str = "\
Examples:
  mlp bench                     # MLP1_ReLU_CE, 3 epochs
  mlp bench --threads 1         # one core
  mlp bench --input-path dense  # without the sparse first layer
  mlp bench --layer \"linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;
    linear,fc3,256,10,0.01\"     # MLP2_ReLU_CE
  mlp bench --peak              # the machine's multiply-add ceiling, 1 thread and all at once";

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Epochs to time
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub epochs: usize,

    /// Instead of training, measure the machine's multiply-add peak: one thread alone, then --threads
    /// threads at once (vector FMAs on registers), the ceiling to read the stage times against
    #[arg(long)]
    pub peak: bool,
}

/// What is computed, and how fast: shared by `train` and `bench`.
#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// The network, e.g. "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01"
    /// (also accepted as the report's -layer)
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_LAYER)]
    pub layer: String,

    /// Loss: ce (softmax cross-entropy, alias softmax_ce) or mse (alias euclidean)
    #[arg(long, value_enum, ignore_case = true, default_value_t = Loss::SoftmaxCe, hide_possible_values = true)]
    pub loss: Loss,

    /// Samples per training batch; the last batch of an epoch may be smaller
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 100
    )]
    pub batch_size: usize,

    /// Seeds the initial weights and the shuffling: the same seed gives the same numbers
    #[arg(long, allow_negative_numbers = true, value_name = "N", default_value_t = DEFAULT_SEED)]
    pub seed: u64,

    /// Folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte, each plain or .gz [default: the bundled data/]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// First-layer path: auto (sparse when a batch has few nonzero pixels), dense or sparse. The
    /// numbers agree to float rounding; only the speed differs
    #[arg(long, value_enum, value_name = "PATH", default_value_t = InputPath::Auto)]
    pub input_path: InputPath,

    /// Threads for the matrix products and sparse kernels [default: all cores]. Speed only: every
    /// thread count gives the same numbers
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Kernels: auto (the best this CPU has), portable, avx2 or avx512 [env: MLP_KERNELS]. Speed
    /// only: every backend gives the same numbers
    #[arg(long, value_enum, value_name = "KERNELS")]
    pub kernels: Option<crate::kernels::Choice>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Learning rate
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.01)]
    pub lr: f32,

    /// L2 weight decay, applied to weights and biases
    #[arg(long, allow_hyphen_values = true, default_value_t = 5e-4)]
    pub weight_decay: f32,

    /// Momentum, in [0, 1)
    #[arg(long, allow_hyphen_values = true, default_value_t = 0.9)]
    pub momentum: f32,

    /// Number of epochs [default: 50; with --resume, the run's own]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub max_epoch: Option<usize>,

    /// Save the model, optimiser state and RNG position to model.ckpt every N epochs (and after the
    /// last), so that --resume can continue the run
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 1
    )]
    pub checkpoint_every: usize,

    /// Continue the run in DIR from its model.ckpt with the settings of its config.json (only
    /// --max-epoch, --threads and --quiet may change), appending to its metrics
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,

    /// Log the mean batch loss and accuracy every N iterations (and flush metrics.csv)
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 50
    )]
    pub disp_freq: usize,

    /// Evaluate the whole test set every N epochs, and after the last
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 1
    )]
    pub test_epoch: usize,

    /// Run name [default: from the spec and loss, in the report's style: AffNet_CE, MLP1_ReLU_CE,
    /// MLP2_Sigmoid_Sigmoid_MSE, ...]
    #[arg(long)]
    pub name: Option<String>,

    /// Run folder [default: runs/NAME]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Also write grad_norms.csv: the L2 norm of each Linear layer's weight gradient every --disp-freq
    /// iterations (the report's vanishing-gradient diagnosis)
    #[arg(long)]
    pub grad_norms: bool,

    /// Keep training through a NaN or infinite loss instead of stopping with status `diverged` (exit 3)
    #[arg(long)]
    pub allow_nan: bool,

    /// Replace a run already in the output folder
    #[arg(long)]
    pub overwrite: bool,

    /// No progress on stderr; the final summary line still goes to stdout
    #[arg(long, short)]
    pub quiet: bool,
}

/// The checked common part of `train` and `bench`.
pub struct Workload {
    pub spec: NetSpec,
    pub threads: usize,
    pub data_dir: PathBuf,
}

impl WorkloadArgs {
    fn check(&self) -> Result<Workload> {
        let spec: NetSpec = self.layer.parse()?;
        if self.batch_size == 0 {
            return Err(Error::usage("--batch-size", "must be at least 1, got 0"));
        }
        let threads = thread_count(self.threads)?;
        choose_kernels(self.kernels)?;
        let data_dir = self.data.clone().unwrap_or_else(default_data_dir);
        Ok(Workload {
            spec,
            threads,
            data_dir,
        })
    }

    fn settings(&self, sgd: Sgd, max_epoch: usize, test_epoch: usize) -> Settings {
        Settings {
            loss: self.loss,
            sgd,
            batch_size: self.batch_size,
            max_epoch,
            test_epoch,
            seed: self.seed,
            input_path: self.input_path,
            allow_nan: false,
            grad_norm_every: None,
        }
    }
}

impl TrainArgs {
    /// Checks every flag and the spec's own consistency; data-dependent checks follow once data is loaded.
    pub fn into_config(self, command: Vec<String>) -> Result<TrainConfig> {
        if let Some(dir) = self.resume.clone() {
            return self.resume_config(dir, command);
        }
        let max_epoch = self.max_epoch.unwrap_or(DEFAULT_MAX_EPOCH);
        let Workload {
            spec,
            threads,
            data_dir,
        } = self.workload.check()?;
        check_numbers(&Numbers {
            lr: self.lr,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            max_epoch,
            checkpoint_every: self.checkpoint_every,
            disp_freq: self.disp_freq,
            test_epoch: self.test_epoch,
        })?;
        let name = match self.name {
            Some(name) => check_run_name(name)?,
            None => derived_name(&spec, self.workload.loss),
        };
        let out_dir = self.out.unwrap_or_else(|| Path::new("runs").join(&name));
        let sgd = Sgd {
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        };
        let mut settings = self.workload.settings(sgd, max_epoch, self.test_epoch);
        settings.allow_nan = self.allow_nan;
        settings.grad_norm_every = self.grad_norms.then_some(self.disp_freq);
        Ok(TrainConfig {
            settings,
            spec,
            threads,
            disp_freq: self.disp_freq,
            data_dir,
            out_dir,
            name,
            overwrite: self.overwrite,
            resume: false,
            checkpoint_every: self.checkpoint_every,
            progress: Mode::detect(self.quiet),
            command,
        })
    }

    /// The configuration of the run in `dir`, from its config.json, to continue it.
    fn resume_config(self, dir: PathBuf, command: Vec<String>) -> Result<TrainConfig> {
        let path = dir.join(crate::run::CONFIG_FILE);
        if !path.exists() {
            return Err(Error::usage(
                "--resume",
                format!("{} is not a run folder (no config.json)", shown(&dir)),
            ));
        }
        refuse_changed_flags(&command)?;
        let c = RunConfig::load(&path)?;
        // config.json is checked as flags are: an edited one must not start a broken run.
        let bad = |e: Error| Error::data(&path, format!("{e}; fix config.json or start a new run"));
        if c.batch_size == 0 {
            return Err(bad(Error::usage("batch_size", "must be at least 1, got 0")));
        }
        check_numbers(&Numbers {
            lr: c.lr,
            weight_decay: c.weight_decay,
            momentum: c.momentum,
            max_epoch: c.max_epoch,
            checkpoint_every: c.checkpoint_every,
            disp_freq: c.disp_freq,
            test_epoch: c.test_epoch,
        })
        .map_err(bad)?;
        let spec: NetSpec = c
            .layer
            .parse()
            .map_err(|e| Error::data(&path, format!("layer: {e}")))?;
        let max_epoch = self.max_epoch.unwrap_or(c.max_epoch);
        if max_epoch == 0 {
            return Err(Error::usage("--max-epoch", "must be at least 1, got 0"));
        }
        let threads = thread_count(self.workload.threads)?;
        choose_kernels(self.workload.kernels)?;
        Ok(TrainConfig {
            spec,
            settings: Settings {
                loss: c.loss,
                sgd: Sgd {
                    lr: c.lr,
                    momentum: c.momentum,
                    weight_decay: c.weight_decay,
                },
                batch_size: c.batch_size,
                max_epoch,
                test_epoch: c.test_epoch,
                seed: c.seed,
                input_path: c.input_path,
                allow_nan: c.allow_nan,
                grad_norm_every: c.grad_norms.then_some(c.disp_freq),
            },
            threads,
            disp_freq: c.disp_freq,
            data_dir: c.data,
            out_dir: dir,
            name: c.name,
            overwrite: false,
            resume: true,
            checkpoint_every: c.checkpoint_every,
            progress: Mode::detect(self.quiet),
            command,
        })
    }
}

/// Sizes rayon's thread pool once, before any parallel kernel runs.
fn configure_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| Error::usage("--threads", format!("cannot start {threads} threads: {e}")))
}

/// Runs `work` on one of rayon's threads rather than on the main thread, so that a run keeps to
/// `--threads` busy threads: called from outside the pool, every parallel kernel would hand its work to
/// the pool and put the main thread to sleep.
fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

fn eval(args: EvalArgs) -> Result<u8> {
    use crate::model::{EVAL_BATCH, Model};
    let probe = crate::output::config::RunConfig::load(&args.run.join(crate::run::CONFIG_FILE))?;
    let data_dir = args.data.clone().unwrap_or_else(|| probe.data.clone());
    let data = crate::data::Dataset::load(&data_dir)?;
    // The chunking of the training run's own evaluation, so the numbers match it exactly.
    let capacity = probe.batch_size.max(EVAL_BATCH.min(data.test.len()));
    let mut model = Model::load(&args.run, capacity)?;
    model.spec.check_data(data.input_width(), data.classes)?;
    let mut batch = model.batch(capacity);
    let loss = model.loss();
    let result = crate::eval::evaluate(
        &mut model.network,
        &data.test,
        loss,
        data.classes,
        &mut batch,
    );
    let csv_path = args.csv.unwrap_or_else(|| args.run.join("confusion.csv"));
    crate::output::write_atomically(&csv_path, |w| {
        result.write_confusion_csv(w).map_err(Into::into)
    })?;
    let mut out = std::io::stdout().lock();
    let _ = result.write_report(&mut out);
    let _ = writeln!(out, "\nconfusion matrix written to {}", csv_path.display());
    Ok(0)
}

fn predict(args: PredictArgs) -> Result<u8> {
    use crate::model::{EVAL_BATCH, Model};
    use crate::predict::{read_inputs, softmax};
    let mut model = Model::load(&args.run, EVAL_BATCH)?;
    let inputs = read_inputs(&args.files, model.spec.input_width())?;
    let mut batch = model.batch(EVAL_BATCH);
    let probabilities = model.loss() == Loss::SoftmaxCe;
    let classes = model.spec.output_width();
    let mut out = std::io::stdout().lock();
    if args.csv {
        let what = if probabilities { "p" } else { "score" };
        let columns: Vec<String> = (0..classes).map(|k| format!("{what}_{k}")).collect();
        let _ = writeln!(out, "file,index,class,{}", columns.join(","));
    }
    let all: Vec<u32> = (0..inputs.split.len() as u32).collect();
    for indices in all.chunks(EVAL_BATCH) {
        batch.fill(&inputs.split, indices);
        let outputs = model.network.forward(&batch);
        for (row, &i) in outputs.rows().into_iter().zip(indices) {
            let raw: Vec<f32> = row.to_vec();
            let class = crate::loss::argmax(row);
            // Cross-entropy models give probabilities (softmax); MSE models their raw outputs.
            let values: Vec<f64> = if probabilities {
                softmax(&raw)
            } else {
                raw.iter().map(|&v| v as f64).collect()
            };
            let (file, index) = &inputs.origins[i as usize];
            let _ = if args.csv {
                let cells: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
                let name = file.display().to_string().replace('"', "\"\"");
                writeln!(out, "\"{name}\",{index},{class},{}", cells.join(","))
            } else {
                let cells: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(k, v)| format!("{k}:{v:.3}"))
                    .collect();
                writeln!(
                    out,
                    "{}[{index}]: {class}  ({})",
                    file.display(),
                    cells.join(" ")
                )
            };
        }
    }
    Ok(0)
}

fn export(args: ExportArgs) -> Result<u8> {
    let ckpt = crate::checkpoint::Checkpoint::load(&args.run.join(crate::run::MODEL_FILE))?;
    let path = args.out.unwrap_or_else(|| args.run.join("weights.npz"));
    let bytes = crate::export::npz(&ckpt);
    crate::output::write_atomically(&path, |w| w.write_all(&bytes))?;
    let _ = writeln!(std::io::stdout(), "{}", path.display());
    Ok(0)
}

fn plot(args: PlotArgs) -> Result<u8> {
    use crate::plot::{Figure, draw, series};
    let size = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| (100..=10_000).contains(&w) && (100..=10_000).contains(&h))
        .ok_or_else(|| {
            Error::usage(
                "--size",
                format!(
                    "\"{}\" is not WIDTHxHEIGHT in 100..=10000 pixels",
                    args.size
                ),
            )
        })?;
    if args.smooth == 0 {
        return Err(Error::usage("--smooth", "must be at least 1, got 0"));
    }
    let names = || {
        args.runs
            .iter()
            .map(|r| r.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let title = args.title.clone().unwrap_or_else(names);
    if args.sigmoid {
        draw(&Figure::Sigmoid, &args.out, size)?;
    } else if args.grad_norms {
        let [run] = args.runs.as_slice() else {
            return Err(Error::usage(
                "--grad-norms",
                format!("charts one run, got {}", args.runs.len()),
            ));
        };
        let layers = series::read_grad_norms(run)?;
        draw(
            &Figure::GradNorms {
                layers: &layers,
                title: &title,
            },
            &args.out,
            size,
        )?;
    } else {
        let runs = args
            .runs
            .iter()
            .map(|r| series::read_run(r, args.smooth))
            .collect::<Result<Vec<_>>>()?;
        draw(
            &Figure::Curves {
                runs: &runs,
                log_loss: args.log_loss,
                title: &title,
            },
            &args.out,
            size,
        )?;
    }
    let _ = writeln!(std::io::stdout(), "{}", args.out.display());
    Ok(0)
}

fn summarize(args: SummarizeArgs) -> Result<u8> {
    use crate::summarize::{collect, to_csv, to_markdown};
    let runs = collect(&args.runs)?;
    let markdown = to_markdown(&runs, args.report)?;
    if let Some(path) = &args.csv {
        let csv = to_csv(&runs)?;
        crate::output::write_atomically(path, |w| w.write_all(csv.as_bytes()))?;
    }
    if let Some(path) = &args.markdown {
        crate::output::write_atomically(path, |w| w.write_all(markdown.as_bytes()))?;
    }
    let _ = write!(std::io::stdout(), "{markdown}");
    Ok(0)
}

/// Trains; the exit code is 0, or says how the run stopped early: 130 (SIGINT), 143 (SIGTERM), 3
/// (diverged).
fn train(args: TrainArgs, command: Vec<String>) -> Result<u8> {
    let cfg = args.into_config(command)?;
    configure_threads(cfg.threads)?;
    let stop = StopFlag::install().map_err(|e| Error::io("signal handlers", e))?;
    let outcome = on_pool(|| run_train(&cfg, &stop))?;
    let code = match outcome.status {
        Status::Interrupted => stop.requested().map_or(130, |s| s.exit_code()),
        Status::Diverged => 3,
        _ => 0,
    };
    if code != 0 {
        let signal = stop
            .requested()
            .map(|s| format!(" by {}", s.name()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "{}{signal}; every row so far is in {} (status: {:?})",
            outcome.stopped,
            cfg.out_dir.join(crate::run::METRICS_FILE).display(),
            outcome.status
        );
    }
    let _ = writeln!(
        std::io::stdout(),
        "{}: train loss {:.5} acc {:.5} | test loss {:.5} acc {:.5} | {} epochs in {:.1} s -> {}",
        cfg.name,
        outcome.train_loss,
        outcome.train_acc,
        outcome.test_loss,
        outcome.test_acc,
        cfg.settings.max_epoch,
        outcome.train_time_s,
        cfg.out_dir.display()
    );
    Ok(code)
}

fn bench(args: BenchArgs) -> Result<u8> {
    let Workload {
        spec,
        threads,
        data_dir,
    } = args.workload.check()?;
    if args.epochs == 0 {
        return Err(Error::usage("--epochs", "must be at least 1, got 0"));
    }
    if args.peak {
        let _ = crate::peak::measure(threads).write(&mut std::io::stdout().lock());
        return Ok(0);
    }
    configure_threads(threads)?;
    let sgd = Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let settings = args.workload.settings(sgd, args.epochs, 1);
    let report = on_pool(|| crate::bench::bench(&spec, &settings, &data_dir))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{spec}\n{threads} thread(s), {} kernels, batch {}, {} epochs\n",
        crate::kernels::current(),
        settings.batch_size,
        args.epochs
    );
    let _ = report.write(&mut out);
    Ok(0)
}

/// Chooses the process's kernels: `--kernels`, else `MLP_KERNELS`, else the best this CPU has. A
/// backend the CPU lacks, or an unknown `MLP_KERNELS`, is a usage error.
pub fn choose_kernels(flag: Option<crate::kernels::Choice>) -> Result<crate::kernels::Backend> {
    use crate::kernels::{Choice, ENV};
    let (choice, source) = match flag {
        Some(choice) => (choice, "--kernels"),
        None => match Choice::from_env() {
            Some(choice) => (choice.map_err(|e| Error::usage(ENV, e))?, ENV),
            None => (Choice::Auto, "--kernels"),
        },
    };
    let backend = choice.resolve().map_err(|e| Error::usage(source, e))?;
    crate::kernels::set(backend);
    Ok(backend)
}

/// `--threads`, or every core when not given.
fn thread_count(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => Err(Error::usage("--threads", "must be at least 1, got 0")),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

/// The numbers of a run that flags and a resumed config.json must both satisfy.
struct Numbers {
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    max_epoch: usize,
    checkpoint_every: usize,
    disp_freq: usize,
    test_epoch: usize,
}

fn check_numbers(n: &Numbers) -> Result<()> {
    check_finite("--lr", n.lr, n.lr >= 0.0, "a number >= 0")?;
    check_finite(
        "--weight-decay",
        n.weight_decay,
        n.weight_decay >= 0.0,
        "a number >= 0",
    )?;
    let momentum_ok = (0.0..1.0).contains(&n.momentum);
    check_finite("--momentum", n.momentum, momentum_ok, "a number in [0, 1)")?;
    for (flag, value) in [
        ("--max-epoch", n.max_epoch),
        ("--checkpoint-every", n.checkpoint_every),
        ("--disp-freq", n.disp_freq),
        ("--test-epoch", n.test_epoch),
    ] {
        if value == 0 {
            return Err(Error::usage(flag, "must be at least 1, got 0"));
        }
    }
    Ok(())
}

/// The longest run name, in bytes.
pub const MAX_NAME: usize = 200;

/// A run name is one folder name: printable, at most [`MAX_NAME`] bytes, no `/` or `\\`, not `..`,
/// not starting with `.` or `-` (so that it can neither leave `--out` nor read as a flag).
fn check_run_name(name: String) -> Result<String> {
    if name.trim().is_empty() {
        return Err(Error::usage("--name", "must not be empty"));
    }
    let problem = if name.len() > MAX_NAME {
        "must be at most 200 bytes"
    } else if name.contains(['/', '\\']) || name.contains("..") {
        "must be one folder name (no '/', '\\' or '..')"
    } else if name.starts_with(['.', '-']) {
        "must not start with '.' or '-'"
    } else if name.chars().any(char::is_control) {
        "must be printable"
    } else {
        return Ok(name);
    };
    Err(Error::usage(
        "--name",
        format!("\"{}\" {problem}", shown_text(&name)),
    ))
}

/// The derived run name, cut to [`MAX_NAME`] bytes on a character boundary.
fn derived_name(spec: &NetSpec, loss: Loss) -> String {
    let mut name = spec.derived_name(loss.tag());
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// At most 60 characters of user input, for a message.
fn shown_text(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

fn shown(path: &Path) -> String {
    shown_text(&path.display().to_string())
}

/// `--resume` continues a run with its own settings: only flags that change no number (and
/// `--max-epoch`) may be given beside it. Names every other flag on the command line.
fn refuse_changed_flags(command: &[String]) -> Result<()> {
    const TAKE_VALUES: [&str; 4] = ["--max-epoch", "--threads", "--kernels", "--resume"];
    const ALONE: [&str; 2] = ["--quiet", "-q"];
    let mut refused = Vec::new();
    let mut args = command.iter().skip_while(|a| a.as_str() != "train").skip(1);
    while let Some(arg) = args.next() {
        let flag = arg.split('=').next().unwrap_or(arg);
        if TAKE_VALUES.contains(&flag) {
            if !arg.contains('=') {
                args.next();
            }
        } else if arg.starts_with('-') && !ALONE.contains(&flag) && !refused.contains(&flag) {
            refused.push(flag);
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::usage(
        "--resume",
        format!(
            "continues a run with the settings of its config.json; remove {} (only --max-epoch, \
             --threads, --kernels and --quiet may be given)",
            shown_text(&refused.join(", "))
        ),
    ))
}

fn check_finite(flag: &'static str, value: f32, in_range: bool, expected: &str) -> Result<()> {
    if value.is_finite() && in_range {
        Ok(())
    } else {
        Err(Error::usage(
            flag,
            format!("must be {expected}, got {value}"),
        ))
    }
}

/// `./data` when it holds the training images, else the `data/` bundled in this crate's source tree.
pub fn default_data_dir() -> PathBuf {
    let local = PathBuf::from("data");
    let has_images = |dir: &Path| crate::data::find(dir, crate::data::TRAIN_IMAGES).is_ok();
    if has_images(&local) {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Accepts the report's single-dash `-layer` (and `-layer=SPEC`) as `--layer`.
fn normalise_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| match arg.to_str() {
            Some("-layer") => "--layer".into(),
            Some(s) if s.starts_with("-layer=") => format!("-{s}").into(),
            _ => arg,
        })
        .collect()
}

/// Parses `args` (program name first) and runs the command. Returns the process exit code; errors are
/// printed here as one line.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let args = normalise_args(args);
    let command: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            report_clap_error(&e);
            return 2;
        }
    };
    let result = match cli.command {
        Command::Train(args) => train(args, command),
        Command::Bench(args) => bench(args),
        Command::Summarize(args) => summarize(args),
        Command::Plot(args) => plot(args),
        Command::Eval(args) => eval(args),
        Command::Predict(args) => predict(args),
        Command::Export(args) => export(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            e.exit_code()
        }
    }
}

/// clap's message is several lines (error, usage, hint); keep the first and point at --help.
fn report_clap_error(e: &clap::Error) {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: bad arguments");
    let _ = writeln!(std::io::stderr(), "{first} (see 'mlp --help')");
}
