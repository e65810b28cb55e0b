//! `ebsctl`: the command-line client of the volume server, shaped like `aws ec2`.
//!
//! Layout: [`cli`] (flags) → [`commands`] (requests, using [`args`] and [`shorthand`] for structured
//! arguments) → [`client`] (gRPC) → [`shapes`] (AWS-shaped replies) → [`output`] (json/text/table).
//! [`waiter`] runs `ebsctl wait`, [`top`] runs `ebsctl top`; [`error`] owns messages and exit codes.

mod args;
mod cli;
mod client;
mod commands;
mod error;
mod output;
mod shapes;
mod shorthand;
mod top;
mod waiter;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::error::{CliError, EXIT_OTHER, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; usage errors exit like the AWS CLI's.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Could not start the async runtime: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    match runtime.block_on(commands::run(cli)).and_then(write_stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn write_stdout(text: Option<String>) -> Result<(), CliError> {
    let Some(text) = text else {
        return Ok(());
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A reader that went away (`| head`) is not our failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Output(e.to_string()))
        }
        _ => Ok(()),
    }
}
