use std::process::ExitCode;

use clap::Parser as _;
use ebridge::{cli::Cli, error::UsageError};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ebridge: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(ebridge::cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<UsageError>() {
            Some(usage) => {
                eprintln!("ebridge: {usage}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("ebridge: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
