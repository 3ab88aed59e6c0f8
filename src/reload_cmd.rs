//! `srvd reload`: a synchronous reload for scripts and systemd's `ExecReload=`; and
//! `srvd upgrade`, the same for a binary upgrade (SIGUSR2, outcome in `<pid_file>.upgrade`).
//!
//! It validates the config itself first (so most mistakes are reported right here, with
//! file:line:column), reads the master's pid from `pid_file`, sends SIGHUP, and waits for
//! the master to publish the outcome in `<pid_file>.reload`. Exit 0 when the new
//! generation serves; non-zero, with the reason, when the reload was rejected.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Config;

/// How long to wait for the master's answer to a reload: its own ready timeout plus margin.
const WAIT: Duration = Duration::from_secs(20);

/// `<pid_file>.reload`, where the master writes each reload's outcome.
pub fn state_path(pid_file: &Path) -> PathBuf {
    let mut s = pid_file.as_os_str().to_owned();
    s.push(".reload");
    PathBuf::from(s)
}

/// What to ask the master for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// SIGHUP: load the config again (`srvd reload`).
    Reload,
    /// SIGUSR2: execute the binary on disk as the new master (`srvd upgrade`).
    Upgrade,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Reload => "reload",
            Op::Upgrade => "upgrade",
        }
    }
}

/// Runs `srvd reload`; `Err` carries the message to print.
pub fn run(config_path: &Path) -> Result<String, String> {
    ask(config_path, Op::Reload)
}

/// Validates the config, signals the master named by `pid_file`, and waits for the
/// outcome it publishes next to `pid_file`.
pub fn ask(config_path: &Path, op: Op) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let pid_file = config.pid_file.as_ref().ok_or_else(|| {
        format!(
            "{}: {} needs pid_file to find the master",
            config_path.display(),
            op.name()
        )
    })?;
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read pid file \"{}\": {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file \"{}\" holds no pid", pid_file.display()))?;
    let (state, counter, signal, wait) = match op {
        Op::Reload => (state_path(pid_file), "reloads=", Signal::SIGHUP, WAIT),
        Op::Upgrade => (
            crate::master::upgrade::upgrade_state_path(pid_file),
            "upgrades=",
            Signal::SIGUSR2,
            crate::master::upgrade::UPGRADE_TIMEOUT + Duration::from_secs(5),
        ),
    };
    let before = count(&state, counter);
    kill(Pid::from_raw(pid), signal).map_err(|e| format!("cannot signal master {pid}: {e}"))?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(text) = std::fs::read_to_string(&state)
            .ok()
            .filter(|_| count(&state, counter) > before)
        {
            let result = text
                .lines()
                .find_map(|l| l.strip_prefix("result="))
                .unwrap_or("unknown")
                .to_owned();
            return match op {
                Op::Reload if result == "ok" => Ok(format!(
                    "reloaded: {}",
                    text.lines()
                        .find(|l| l.starts_with("generation="))
                        .unwrap_or("")
                )),
                Op::Upgrade if result.starts_with("ok") => Ok(format!(
                    "upgraded: new master {} serves, master {pid} drains",
                    result.trim_start_matches("ok pid=")
                )),
                _ => Err(format!("{} {result}", op.name())),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no answer from master {pid} within {wait:?}"))
}

/// The `key=` counter of a state file (0 while the file is absent).
pub fn count(state: &Path, key: &str) -> u64 {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix(key)?.parse().ok()))
        .unwrap_or(0)
}

/// `reloads=` from a `<pid_file>.reload` file: how many reloads the running master has
/// finished (0 while the file is absent).
pub fn reloads_done(state: &Path) -> u64 {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("reloads=")?.parse().ok())
        })
        .unwrap_or(0)
}
