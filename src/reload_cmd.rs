//! `srvd reload`: a synchronous reload for scripts and systemd's `ExecReload=`.
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

/// How long to wait for the master's answer: its own ready timeout plus margin.
const WAIT: Duration = Duration::from_secs(20);

/// `<pid_file>.reload`, where the master writes each reload's outcome.
pub fn state_path(pid_file: &Path) -> PathBuf {
    let mut s = pid_file.as_os_str().to_owned();
    s.push(".reload");
    PathBuf::from(s)
}

/// Runs the command; `Err` carries the message to print.
pub fn run(config_path: &Path) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let pid_file = config.pid_file.as_ref().ok_or_else(|| {
        format!(
            "{}: reload needs pid_file to find the master",
            config_path.display()
        )
    })?;
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read pid file \"{}\": {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file \"{}\" holds no pid", pid_file.display()))?;
    let state = state_path(pid_file);
    let before = reloads_done(&state);
    kill(Pid::from_raw(pid), Signal::SIGHUP)
        .map_err(|e| format!("cannot signal master {pid}: {e}"))?;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(text) = std::fs::read_to_string(&state)
            .ok()
            .filter(|_| reloads_done(&state) > before)
        {
            let result = text
                .lines()
                .find_map(|l| l.strip_prefix("result="))
                .unwrap_or("unknown")
                .to_owned();
            return if result == "ok" {
                Ok(format!(
                    "reloaded: {}",
                    text.lines()
                        .find(|l| l.starts_with("generation="))
                        .unwrap_or("")
                ))
            } else {
                Err(format!("reload {result}"))
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no answer from master {pid} within {WAIT:?}"))
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
