//! The shipped unit `systemd/srvd.service`: `systemd-analyze verify` is clean and
//! `systemd-analyze security --offline=yes` rates its exposure at most 2.0.
//!
//! `verify` checks that the `Exec*=` binaries exist, so the unit is copied to a temporary
//! directory with `/usr/local/bin/srvd` rewritten to the binary under test.
//! Needs `systemd-analyze` (Debian: `apt-get install -y systemd`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

const MAX_EXPOSURE: f64 = 2.0;

fn unit_copy() -> PathBuf {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/srvd.service");
    let text = std::fs::read_to_string(src).unwrap();
    assert!(text.contains("/usr/local/bin/srvd"));
    let dir = temp_dir("systemd-unit");
    let path = dir.join("srvd.service");
    let bin = bin();
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/srvd", bin.to_str().unwrap()),
    )
    .unwrap();
    path
}

fn analyze(args: &[&str], unit: &PathBuf) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}); install it: apt-get install -y systemd")
        })
}

#[test]
fn unit_verifies_cleanly() {
    let unit = unit_copy();
    let out = analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(unit.parent().unwrap());
}

#[test]
fn unit_exposure_is_at_most_two() {
    let unit = unit_copy();
    let out = analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let score: f64 = stdout
        .lines()
        .find_map(|l| {
            let rest = l.split("Overall exposure level for srvd.service:").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}\n{stderr}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(unit.parent().unwrap());
}
