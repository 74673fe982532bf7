//! The `warden` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warden::sandbox::Engine;

/// A WebAssembly plugin host with supervised sandboxes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Loads each plugin and checks it against the `warden:plugin` world (imports,
    /// exports and their types) without calling it; lists every problem.
    Check {
        /// Plugin components (.wasm).
        #[arg(required = true)]
        plugins: Vec<PathBuf>,
    },
}

fn main() -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { plugins } => check(&plugins),
    }
}

fn check(plugins: &[PathBuf]) -> Result<ExitCode> {
    let engine = Engine::new()?;
    let mut failed = 0;
    for path in plugins {
        match engine.load_file(path) {
            Ok(plugin) => println!("ok    {} (sha256 {})", path.display(), &plugin.hash()[..16]),
            Err(e) => {
                failed += 1;
                println!("error {e}");
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
