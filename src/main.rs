//! `nevermore`: the one binary of the collector, relay and query service.

mod cli;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{CheckConfigArgs, Cli, CollectArgs, Command, LogArgs, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Collect(args) => match collect(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("nevermore collect: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig(args) => check_config(&args),
        other => {
            eprintln!(
                "nevermore {}: not yet available in this build",
                other.name()
            );
            ExitCode::from(2)
        }
    }
}

fn check_config(args: &CheckConfigArgs) -> ExitCode {
    match nevermore_collector::config::load(&args.file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            println!("{}", loaded.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let loaded = match nevermore_collector::config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    init_tracing(&args.log)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nevermore")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        nevermore_collector::run(loaded.collector, shutdown)
            .await
            .context("collector failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(log: &LogArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match &log.log_level {
        Some(level) => EnvFilter::try_new(level).context("invalid --log-level")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match log.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    })
}
