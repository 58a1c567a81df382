//! `ironlb-sim`: the ironlb device model as a command-line tool.
//!
//! `ironlb-sim serve` runs the model as its own process over shared-memory files (see [`ironlb_sim::serve`]).

use clap::{CommandFactory as _, Parser, Subcommand};
use ironlb_sim::ServeArgs;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Bit-exact software model of the ironlb NIC.
#[derive(Debug, Parser)]
#[command(name = "ironlb-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the model as its own process: BAR0 and host memory are files a driver (or QEMU ivshmem) maps too.
    Serve(ServeArgs),
    /// Write the manual pages (ironlb-sim.1, ironlb-sim-serve.1) into a directory: what the package installs.
    #[command(hide = true)]
    Manpages {
        /// Output directory (created if missing).
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Manpages { dir } => manpages(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironlb-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| format!("signal handler: {e}"))?;
    }
    ironlb_sim::serve(args, &stop)
}

fn manpages(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|e| format!("{}: {e}", dir.display()))
}
