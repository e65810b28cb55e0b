//! `volume-server`: parses flags, sets up logging, runs until SIGTERM/SIGINT.

use clap::Parser;
use volume_server::{Config, run};

/// Keeps large I/O buffers in malloc's heap instead of a fresh `mmap` each: glibc serves
/// allocations of 128 KiB and more (until its dynamic threshold adapts) with `mmap` and returns
/// them with `munmap`, so every 1 MiB read buffer was faulted in page by page and zeroed by the
/// kernel again. A profile of 1 MiB reads put a third of the server's CPU there. Reused heap
/// memory costs nothing; what a connection can hold is bounded by the NBD session's byte budget.
fn keep_large_buffers_in_the_heap() {
    const MAX_BUFFER: i32 = 64 << 20;
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAX_BUFFER);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MAX_BUFFER);
    }
}

fn main() -> std::process::ExitCode {
    // An instance's init is this executable too (so it is always there and matches the server);
    // it must start before any thread does.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(instance_manager::boot::INIT_ARG)) {
        let config = args.next().unwrap_or_default();
        instance_manager::init::main(std::path::Path::new(&config));
    }
    keep_large_buffers_in_the_heap();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(serve()),
        Err(e) => {
            eprintln!("volume-server: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cfg = Config::parse();
    // The handlers are installed now, before `run` prints `listening`: a SIGTERM that follows
    // that line at once must drain the server, not kill it with the default action.
    let shutdown = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("volume-server: cannot install signal handlers: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(cfg, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("volume-server: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT. Both handlers are installed when this is called.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
