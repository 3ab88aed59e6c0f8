//! Entry point: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use srvd::cli::{Args, Cmd};
use srvd::config::Config;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(cmd @ (Cmd::Reload | Cmd::Upgrade)) => match srvd::reload_cmd::ask(
            &args.config,
            match cmd {
                Cmd::Upgrade => srvd::reload_cmd::Op::Upgrade,
                _ => srvd::reload_cmd::Op::Reload,
            },
        ) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("srvd: {msg}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Status) => match srvd::status_cmd::run(&args.config) {
            Ok(table) => {
                println!("{table}");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                eprintln!("srvd: {msg}");
                ExitCode::FAILURE
            }
        },
        None => {
            let config = match Config::load(&args.config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            if args.check {
                for warning in &config.warnings {
                    eprintln!("{}: warning: {warning}", args.config.display());
                }
                for note in &config.notes {
                    println!("{}: {note}", args.config.display());
                }
                println!("{}: configuration ok", args.config.display());
                return ExitCode::SUCCESS;
            }
            match srvd::master::Master::new(config, args.config).and_then(|m| m.run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("srvd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
