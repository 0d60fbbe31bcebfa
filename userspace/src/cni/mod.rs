//! ebridge as a CNI plugin: the `ebridge` binary speaks CNI when the
//! runtime sets CNI_COMMAND. The same library as the CLI does the work
//! (`cmd::up::ensure` brings the datapath up from the network config,
//! `cmd::endpoint::attach`/`remove_endpoint` make and undo endpoints); this
//! module only reads the CNI call and writes its answer. stdout carries the
//! result or the error object and nothing else.
mod config;
mod env;
mod ipam;
mod ops;

pub mod install;

use std::{io::Read as _, process::ExitCode};

use rscni_types::{
    error::Error,
    legacy,
    types::{CNIResult, CNIResultWithVersion, Cmd, ErrorResult},
    version::{PluginInfo, SpecVersion},
};

/// Runs one CNI call from the environment and stdin; the process's exit
/// status.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        return fail(
            SpecVersion::CURRENT,
            &Error::IOFailure(format!("cannot read the network config from stdin: {e}")),
        );
    }
    // Errors are reported in the config's version when it can be read.
    let declared = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str()?.parse::<SpecVersion>().ok())
        .filter(|v| PluginInfo::default().validate(*v).is_ok())
        .unwrap_or(SpecVersion::CURRENT);
    let env = match env::read() {
        Ok(env) => env,
        Err(e) => {
            // VERSION needs nothing but CNI_COMMAND.
            if std::env::var("CNI_COMMAND").as_deref() == Ok("VERSION") {
                return version();
            }
            return fail(declared, &e);
        }
    };
    if env.command == Cmd::Version {
        return version();
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                declared,
                &Error::IOFailure(format!("cannot start the runtime: {e}")),
            )
        }
    };
    match rt.block_on(ops::run(&env, &stdin)) {
        Ok(Some((version, result))) => print_result(version, result),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(declared, &e),
    }
}

/// VERSION: every version this plugin speaks, whatever the config says.
fn version() -> ExitCode {
    print_json(&PluginInfo::default());
    ExitCode::SUCCESS
}

/// An ADD result in the layout of the config's version.
fn print_result(version: SpecVersion, result: CNIResult) -> ExitCode {
    if version.is_legacy() {
        print_json(&legacy::CNIResult::new(version, result));
    } else {
        print_json(&CNIResultWithVersion::new(version, result));
    }
    ExitCode::SUCCESS
}

fn fail(version: SpecVersion, error: &Error) -> ExitCode {
    print_json(&ErrorResult::new(version, error));
    ExitCode::FAILURE
}

fn print_json(value: &impl serde::Serialize) {
    use std::io::Write as _;
    let text = serde_json::to_string(value).unwrap_or_else(|e| {
        format!(r#"{{"code":5,"msg":"I/O failure","details":"cannot encode the answer: {e}"}}"#)
    });
    // Nothing more can be done if the runtime closed our stdout.
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Library errors as CNI errors: bad input (the config's values, an
/// address or MAC already taken, settings differing from the live
/// datapath) is an invalid network config, 7; anything else is ebridge
/// failing, 100 (the first code the spec leaves to plugins).
pub fn to_cni(e: anyhow::Error) -> Error {
    match e.downcast_ref::<crate::error::UsageError>() {
        Some(usage) => Error::InvalidNetworkConfig(usage.0.clone()),
        None => Error::Custom(100, "ebridge failed".to_string(), format!("{e:#}")),
    }
}
