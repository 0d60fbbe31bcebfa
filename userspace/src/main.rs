use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
    process::ExitCode,
    sync::Mutex,
    thread::JoinHandle,
    time::{SystemTime, UNIX_EPOCH},
};

use clap::{error::ErrorKind, Parser as _};
use ebridge::{
    cli::{Cli, Command, LogFormat},
    error::UsageError,
};

fn main() -> ExitCode {
    // A container runtime calling the plugin: stdin is the network config,
    // stdout only the result.
    if std::env::var_os("CNI_COMMAND").is_some() {
        init_logging(LogFormat::Text, "warn");
        return ebridge::cni::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    // The agent runs unattended and its log is what an operator reads
    // (journal, kubectl logs); other commands answer on stdout and log only
    // what went wrong. RUST_LOG overrides either.
    let default_filter = match cli.command {
        Command::Agent(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_filter);
    relay_output();
    let format = cli.log_format;
    let code = run(cli, format);
    finish_relays();
    code
}

fn run(cli: Cli, format: LogFormat) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(format, format_args!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(ebridge::cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<UsageError>() {
            Some(usage) => {
                fail(format, format_args!("{usage}"));
                ExitCode::from(2)
            }
            None => {
                fail(format, format_args!("{e:#}"));
                ExitCode::from(1)
            }
        },
    }
}

/// The one line a failed command ends with. With --log-format json it is a
/// JSON object like the log lines, so a collector reading stderr never meets
/// a line it cannot parse; RUST_LOG does not silence it.
fn fail(format: LogFormat, msg: std::fmt::Arguments<'_>) {
    match format {
        LogFormat::Text => say(format_args!("ebridge: {msg}")),
        LogFormat::Json => say(format_args!(
            "{}",
            json_line(SystemTime::now(), "ERROR", "ebridge", &msg.to_string())
        )),
    }
}

/// eprintln! panics when stderr is gone; the last line is not worth that.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Logs go to stderr whatever the command: stdout is for results (a CNI
/// result, `--json` listings, a completion script) that a program parses.
fn init_logging(format: LogFormat, default_filter: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    builder.target(env_logger::Target::Stderr);
    if format == LogFormat::Json {
        builder.write_style(env_logger::WriteStyle::Never);
        builder.format(|buf, record| {
            writeln!(
                buf,
                "{}",
                json_line(
                    SystemTime::now(),
                    record.level().as_str(),
                    record.target(),
                    &record.args().to_string(),
                )
            )
        });
    }
    builder.init();
}

/// One log record as one line of JSON; a message's own newlines are
/// escaped, so a record never spans lines.
fn json_line(at: SystemTime, level: &str, target: &str, message: &str) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        timestamp: String,
        level: &'a str,
        target: &'a str,
        message: &'a str,
    }
    let line = Line {
        timestamp: rfc3339_utc(at),
        level,
        target,
        message,
    };
    serde_json::to_string(&line).unwrap_or_else(|_| String::from("{}"))
}

/// `2024-05-01T12:34:56.789Z`: what log collectors parse without a format
/// hint.
fn rfc3339_utc(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's
    // days_from_civil inverse), valid for every date a clock gives.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Help and version go out as clap renders them; bad arguments become the
/// same one line with exit status 2 that every other bad input gets.
fn clap_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            say(format_args!(
                "ebridge: {}",
                one_line(&e.render().to_string())
            ));
            ExitCode::from(2)
        }
    }
}

/// clap's "error: …" paragraph, any tips and the usage line, joined; the
/// "For more information" line is dropped since the usage says as much.
fn one_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    for para in rendered.split("\n\n") {
        let text = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || text.starts_with("For more information") {
            continue;
        }
        let text = text.strip_prefix("error: ").unwrap_or(&text);
        let text = match text.strip_prefix("Usage: ") {
            Some(usage) => format!("usage: {usage}"),
            None => text.to_string(),
        };
        parts.push(text);
    }
    parts.join("; ")
}

/// A reader that goes away early (`ebridge show stats | head -1`, `| grep
/// -q`) must cost the output, never the command: a write to a closed pipe
/// would panic (SIGPIPE is ignored) or, with SIGPIPE at its default, kill
/// the process half-way through a change or the agent mid-run. So when
/// stdout or stderr is a pipe or socket, the process writes into a pipe of
/// its own and a thread passes that on, dropping what the reader no longer
/// takes.
struct Relay {
    fd: RawFd,
    /// The original stdout/stderr, put back when done.
    original: OwnedFd,
    pump: JoinHandle<()>,
}

static RELAYS: Mutex<Vec<Relay>> = Mutex::new(Vec::new());

fn relay_output() {
    let mut relays = Vec::new();
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        if let Some(relay) = relay(fd) {
            relays.push(relay);
        }
    }
    if relays.is_empty() {
        return;
    }
    if let Ok(mut all) = RELAYS.lock() {
        all.extend(relays);
    }
    // A panic message must reach the real stderr, after what was already
    // written, before the process exits and takes the pump threads along.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        finish_relays();
        report(info);
    }));
}

fn relay(fd: RawFd) -> Option<Relay> {
    // SAFETY: fstat/fcntl/pipe2/dup2/close on fds this function owns or on
    // stdout/stderr; every fd made is either wrapped or closed on failure.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return None;
        }
        let kind = st.st_mode & libc::S_IFMT;
        // Terminals and files do not go away under a writer.
        if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
            return None;
        }
        let original = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if original < 0 {
            return None;
        }
        let original = OwnedFd::from_raw_fd(original);
        let for_pump = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if for_pump < 0 {
            return None;
        }
        let mut out = File::from_raw_fd(for_pump);
        let mut ends = [0; 2];
        if libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return None;
        }
        let mut input = File::from_raw_fd(ends[0]);
        let write_end = OwnedFd::from_raw_fd(ends[1]);
        if libc::dup2(ends[1], fd) < 0 {
            return None;
        }
        drop(write_end);
        let pump = std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let mut reader_gone = false;
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !reader_gone && out.write_all(&buf[..n]).is_err() {
                            reader_gone = true;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Some(Relay { fd, original, pump })
    }
}

/// Puts the original stdout/stderr back and waits until the pumps have
/// passed on everything written before.
fn finish_relays() {
    let relays: Vec<Relay> = match RELAYS.lock() {
        Ok(mut all) => all.drain(..).collect(),
        Err(_) => return,
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    for relay in relays {
        use std::os::fd::AsRawFd as _;
        // SAFETY: dup2 of an fd we own over stdout/stderr; this closes the
        // relay pipe's last write end, so the pump sees end of file.
        unsafe { libc::dup2(relay.original.as_raw_fd(), relay.fd) };
        let _ = relay.pump.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => one_line(&e.render().to_string()),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            UNIX_EPOCH + std::time::Duration::from_millis(secs * 1000 + millis)
        };
        assert_eq!(rfc3339_utc(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // A leap day, and the last millisecond of a year.
        assert_eq!(rfc3339_utc(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            rfc3339_utc(at(1_735_689_599, 999)),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_utc(at(4_107_542_400, 0)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let line = json_line(UNIX_EPOCH, "WARN", "ebridge::x", "two\nlines \"quoted\"");
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "ebridge::x");
        assert_eq!(v["message"], "two\nlines \"quoted\"");
    }

    #[test]
    fn log_format_is_global() {
        let cli = Cli::try_parse_from(["ebridge", "agent", "--log-format", "json"]).expect("parse");
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli =
            Cli::try_parse_from(["ebridge", "--log-format", "json", "show", "fdb"]).expect("parse");
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["ebridge", "down"]).expect("parse");
        assert_eq!(cli.log_format, LogFormat::Text);
        let msg = parse_error(&["ebridge", "down", "--log-format", "xml"]);
        assert!(
            msg.contains("'xml'") && msg.contains("text") && msg.contains("json"),
            "{msg}"
        );
    }

    #[test]
    fn clap_errors_are_one_line() {
        let msg = parse_error(&["ebridge", "agent", "--gc-interval", "0"]);
        assert!(msg.contains("'0'") && msg.contains("1..=86400"), "{msg}");
        let msg = parse_error(&["ebridge", "endpoint", "add"]);
        assert!(msg.contains("<NAME>") && msg.contains("usage:"), "{msg}");
        let msg = parse_error(&["ebridge", "show", "fdb", "--jsn"]);
        assert!(msg.contains("'--jsn'") && msg.contains("'--json'"), "{msg}");
        for msg in [
            parse_error(&["ebridge", "agent", "--gc-interval", "0"]),
            parse_error(&["ebridge", "endpoint", "add"]),
            parse_error(&["ebridge", "show", "fdb", "--jsn"]),
        ] {
            assert_eq!(msg.lines().count(), 1, "{msg}");
            assert!(!msg.contains("For more information"), "{msg}");
        }
    }
}
