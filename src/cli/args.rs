//! The flags of every subcommand, as clap structs, with their defaults and examples.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::batch::InputPath;
use crate::loss::Loss;

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
  tanh,NAME                 tanh(x)
  leaky_relu,NAME[,SLOPE]   x if x > 0, else SLOPE * x (SLOPE >= 0, default 0.01)

Run folder: metrics.csv (step,epoch,split,lr,loss,acc,time_s), summary.csv, config.json,
model.ckpt (for --resume, eval, predict and export), grad_norms.csv with --grad-norms.";

#[derive(Debug, Parser)]
#[command(
    name = "mlp",
    version,
    about = "Train multilayer perceptrons on MNIST-style data from a one-line layer spec",
    arg_required_else_help = true,
    long_about = "Train multilayer perceptrons on MNIST-style data from a one-line layer spec, with SGD, \
                  momentum and weight decay, leaving CSV curves and a summary in a run folder."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether `name` is one of the subcommands (so that an error can point at its --help).
    pub fn is_subcommand(name: &str) -> bool {
        use clap::CommandFactory;
        Self::command().find_subcommand(name).is_some()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a network and write metrics.csv, summary.csv, config.json and model.ckpt into its run folder
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

    /// Threads for the matrix products and sparse kernels [default: the cores other programs leave
    /// idle, re-read every epoch (Linux; all cores elsewhere)]. Speed only: every thread count gives
    /// the same numbers
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
    /// --max-epoch, --threads, --kernels and --quiet may change), appending to its metrics
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

/// `./data` when it holds the training images, else the `data/` bundled in this crate's source tree.
pub fn default_data_dir() -> PathBuf {
    let local = PathBuf::from("data");
    let has_images = |dir: &Path| crate::data::find(dir, crate::data::TRAIN_IMAGES).is_ok();
    if has_images(&local) {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}
