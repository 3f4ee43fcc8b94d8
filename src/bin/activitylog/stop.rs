//! Stopping a long command cleanly on SIGINT (Ctrl-C) or SIGTERM: the first signal sets a flag
//! the command checks at points where it can stop whole (an import between batches, an export
//! between messages), and the command then says what it did and exits with 128 + the signal's
//! number (130 for SIGINT), as a shell reports a process the signal ended. A second signal ends
//! the process at once, with the same status, as the signal alone would have.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

/// The flag SIGINT and SIGTERM set, and which of them came first.
pub struct Stop {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// Installs the handlers: from now on SIGINT and SIGTERM set the flag instead of ending the
    /// process (a second one still ends it).
    pub fn install() -> Result<Stop> {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // In this order: the shutdown checks the flag before this signal sets it, so only a
            // second signal ends the process at once.
            signal_hook::flag::register_conditional_shutdown(
                sig,
                128 + sig,
                Arc::clone(&requested),
            )
            .and_then(|_| signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&requested)))
            .context("cannot install the handlers of SIGINT and SIGTERM")?;
        }
        Ok(Stop { requested, signal })
    }

    /// The flag: set once a signal asked the command to stop.
    pub fn flag(&self) -> &AtomicBool {
        &self.requested
    }

    /// Whether a signal asked the command to stop.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// The error that ends a command stopped by the signal, `what` saying what it did first.
    pub fn stopped(&self, what: String) -> anyhow::Error {
        let signal = match self.signal.load(Ordering::Relaxed) {
            0 => SIGINT,
            n => n as i32,
        };
        anyhow::Error::new(Stopped { signal, what })
    }
}

/// A command that a signal stopped, and what it did before.
#[derive(Debug)]
pub struct Stopped {
    /// The signal's number.
    signal: i32,
    /// What the command did before it stopped, as the rest of a sentence.
    what: String,
}

impl Stopped {
    /// The exit status: 128 + the signal's number.
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(1)
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.signal {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            _ => "a signal",
        };
        write!(f, "stopped by {name} after {}", self.what)
    }
}

impl std::error::Error for Stopped {}
