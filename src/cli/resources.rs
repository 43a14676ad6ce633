//! Which threads and kernels a command runs on, chosen once at its start.

use crate::error::{Error, Result};

/// The most threads a run may ask for: more than any machine's cores, fewer than a process may start.
pub const MAX_THREADS: usize = 1024;

/// Sizes the kernels' thread pool once, before any parallel kernel runs.
pub fn configure_threads(threads: usize) -> Result<()> {
    crate::kernels::Pool::configure(threads)
        .map_err(|e| Error::usage("--threads", format!("cannot start {threads} threads: {e}")))
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
pub fn thread_count(threads: Option<usize>) -> Result<usize> {
    match threads {
        Some(0) => Err(Error::usage("--threads", "must be at least 1, got 0")),
        Some(n) if n > MAX_THREADS => Err(Error::usage(
            "--threads",
            format!("must be at most {MAX_THREADS}, got {n}"),
        )),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}
