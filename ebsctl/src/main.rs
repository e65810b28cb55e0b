//! `ebsctl`: the command-line client of the volume server, shaped like `aws ec2`.
//!
//! Layout: [`cli`] (flags) → [`commands`] (requests, using [`args`] and [`shorthand`] for structured
//! arguments) → [`client`] (gRPC) → [`shapes`] (AWS-shaped replies) → [`output`] (json/text/table).
//! [`waiter`] runs `ebsctl wait`, [`top`] runs `ebsctl top`; [`error`] owns messages and exit codes.

mod args;
mod cli;
mod client;
mod commands;
mod cost;
mod error;
mod input;
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
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(Parse::Input(e)) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(Parse::Clap(e)) => return clap_exit(&e),
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

/// Why the command line was not read.
enum Parse {
    Clap(clap::Error),
    Input(args::ArgError),
}

/// The command line, with `--cli-input-json`'s members added as flags where it lacks them
/// (found before clap reads the line, whose required flags the input may be giving).
fn parse(args: Vec<std::ffi::OsString>) -> Result<cli::Cli, Parse> {
    // Only with --cli-input-json are arguments read as text (one not UTF-8 is read lossily).
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some(raw) = input::find(&text) else {
        return cli::Cli::try_parse_from(args).map_err(Parse::Clap);
    };
    let Some(command) = input::command_of(&text) else {
        return cli::Cli::try_parse_from(args).map_err(Parse::Clap);
    };
    let expanded = input::expand(&text, &command, &raw).map_err(Parse::Input)?;
    cli::Cli::try_parse_from(expanded).map_err(Parse::Clap)
}

/// How a command line clap refused (or answered: --help, --version) ends.
fn clap_exit(e: &clap::Error) -> ExitCode {
    if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
        eprintln!("{}", unknown_command(e));
        return ExitCode::from(EXIT_USAGE);
    }
    // --help and --version are not errors; usage errors exit like the AWS CLI's.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// An unknown command, with the one closest to it (clap's own tip lists every command within
/// its similarity threshold, the likeliest last).
fn unknown_command(e: &clap::Error) -> String {
    use clap::CommandFactory as _;
    let typed = match e.get(clap::error::ContextKind::InvalidSubcommand) {
        Some(clap::error::ContextValue::String(s)) => s.clone(),
        _ => return e.to_string(),
    };
    let command = cli::Cli::command();
    let best = command
        .get_subcommands()
        .map(|c| c.get_name())
        .map(|name| (edit_distance(&typed, name), name))
        .min();
    let mut out = format!("error: unrecognized command '{typed}'\n");
    if let Some((d, name)) = best
        && d <= typed.len().max(3) / 3
    {
        out.push_str(&format!("\n  tip: did you mean '{name}'?\n"));
    }
    out.push_str(
        "\nUsage: ebsctl [OPTIONS] <COMMAND>\n\nFor the list of commands, try 'ebsctl --help'.",
    );
    out
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("crate-volume", "create-volume"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("describe-volume", "describe-volumes"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
