//! Ctrl-C / SIGTERM turn into an error at the next check, so the
//! topology guards unwind and remove every namespace and pin; the default
//! action would kill the process with the namespaces still there.
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once a signal asked us to stop.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted; tearing down");
    }
    Ok(())
}
