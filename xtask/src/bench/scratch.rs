//! Temporary files (iptables-restore input, timed command scripts),
//! removed when dropped.
use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    pub fn new(what: &str, content: &str) -> Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "{}{}-{what}-{n}",
            super::reap::RUN_PREFIX,
            std::process::id()
        ));
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path_str(&self) -> Result<String> {
        self.path
            .to_str()
            .map(str::to_string)
            .with_context(|| format!("{} is not UTF-8", self.path.display()))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
