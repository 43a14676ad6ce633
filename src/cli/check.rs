//! Raw flags (or a resumed config.json) into a checked configuration, before any work starts.

use std::path::{Path, PathBuf};

use crate::cli::args::{DEFAULT_MAX_EPOCH, TrainArgs, WorkloadArgs, default_data_dir};
use crate::cli::resources::{choose_kernels, thread_count};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::optim::Sgd;
use crate::output::config::RunConfig;
use crate::output::progress::Mode;
use crate::run::TrainConfig;
use crate::spec::NetSpec;
use crate::train::Settings;

/// The checked common part of `train` and `bench`.
pub struct Workload {
    pub spec: NetSpec,
    pub threads: usize,
    pub data_dir: PathBuf,
}

impl WorkloadArgs {
    pub fn check(&self) -> Result<Workload> {
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

    pub fn settings(&self, sgd: Sgd, max_epoch: usize, test_epoch: usize) -> Settings {
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
            threads_beside: self.workload.threads.is_none(),
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
        let path = dir.join(crate::run_folder::CONFIG_FILE);
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
            threads_beside: self.workload.threads.is_none(),
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
        format!("\"{}\" {problem}", crate::error::shown(&name)),
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

fn shown(path: &Path) -> String {
    crate::error::shown(&path.display().to_string())
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
            crate::error::shown(&refused.join(", "))
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
