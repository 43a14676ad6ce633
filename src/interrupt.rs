//! Ctrl-C (SIGINT) and SIGTERM: the first asks training to stop after the current iteration, so that
//! every computed row is kept; a second Ctrl-C or SIGTERM ends the process at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Which signal asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The shell's convention: 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Set by the signal handlers, read by the training loop once per iteration.
#[derive(Debug, Clone, Default)]
pub struct StopFlag {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl StopFlag {
    /// A flag that only [`StopFlag::request`] sets (for tests and library use).
    pub fn new() -> Self {
        StopFlag::default()
    }

    /// Installs the handlers. A signal arriving when either flag is already set exits the process with
    /// that signal's code instead.
    pub fn install() -> std::io::Result<Self> {
        let flag = StopFlag::new();
        for (signal, own, code) in [
            (SIGINT, &flag.interrupt, Signal::Interrupt.exit_code()),
            (SIGTERM, &flag.terminate, Signal::Terminate.exit_code()),
        ] {
            // Registered first, so it sees the flags as they were before this delivery.
            for set in [&flag.interrupt, &flag.terminate] {
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    code as i32,
                    Arc::clone(set),
                )?;
            }
            signal_hook::flag::register(signal, Arc::clone(own))?;
        }
        Ok(flag)
    }

    pub fn request(&self, signal: Signal) {
        match signal {
            Signal::Interrupt => self.interrupt.store(true, Ordering::SeqCst),
            Signal::Terminate => self.terminate.store(true, Ordering::SeqCst),
        }
    }

    /// The signal that asked to stop, if any.
    pub fn requested(&self) -> Option<Signal> {
        if self.terminate.load(Ordering::SeqCst) {
            Some(Signal::Terminate)
        } else if self.interrupt.load(Ordering::SeqCst) {
            Some(Signal::Interrupt)
        } else {
            None
        }
    }
}
