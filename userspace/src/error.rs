use std::fmt;

/// Bad input from the user: printed as one line, exit status 2, and the
/// command has changed nothing.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand: `return Err(usage(format!(...)))`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: no arguments, cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Err(usage(format!(
            "ebridge must run as root (uid 0) to manage links and BPF programs; it runs as uid {uid}"
        )));
    }
    Ok(())
}
