//! Command line of the `nevermore` binary.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Lossless Kubernetes log collection, log search and deduplicated metrics in one binary.
#[derive(Debug, Parser)]
#[command(name = "nevermore", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node log collector
    #[command(
        long_about = "Run the node log collector (one per node, as a DaemonSet): tail \
        container logs under the pods directory and application/audit log files, parse and \
        enrich them, and ship them to the configured sinks without losing or reordering a line. \
        Runs until SIGTERM or SIGINT, then drains, waits for acknowledgements and writes a final \
        checkpoint."
    )]
    Collect(CollectArgs),

    /// Check a config file and print every problem in it
    #[command(
        long_about = "Check a config file and print every problem in it, one a line, as \
        `FILE:LINE:COL: error: message` (warnings as `warning:`). Exits 0 and prints a summary \
        when the file is valid, 1 when it has errors."
    )]
    CheckConfig(CheckConfigArgs),

    /// Relay records from Kafka to Elasticsearch or the embedded index (not yet available)
    #[command(
        long_about = "Consume the Kafka topics the collectors write and bulk-write the \
        records to Elasticsearch or the embedded index. Not yet available in this build."
    )]
    Relay(FutureArgs),

    /// Serve log search, deduplicated metrics and dashboards over HTTP (not yet available)
    #[command(
        long_about = "Run the query service: the log search API over Elasticsearch or \
        the embedded index, a Prometheus-compatible API that deduplicates HA replicas, \
        namespace/workload/pod dashboards and the web UI. Reads the `serve` section of the \
        config file. Not yet available in this build."
    )]
    Serve(FutureArgs),

    /// Run collector, embedded index and query service in one process (not yet available)
    #[command(
        long_about = "Run the collector, the embedded index and the query service in one \
        process: the zero-setup default for a single machine. Not yet available in this build."
    )]
    Up(FutureArgs),

    /// Search logs from the terminal through the search API (not yet available)
    #[command(
        long_about = "Search logs with the nevermore query language through the search \
        API of a running `nevermore serve`, and print the matching records. Not yet available \
        in this build."
    )]
    Search(SearchArgs),
}

impl Command {
    /// The subcommand's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Collect(_) => "collect",
            Command::CheckConfig(_) => "check-config",
            Command::Relay(_) => "relay",
            Command::Serve(_) => "serve",
            Command::Up(_) => "up",
            Command::Search(_) => "search",
        }
    }
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Path of the YAML config file
    #[arg(short, long, env = "NEVERMORE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Path of the YAML config file to check
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Options of the subcommands that are not yet available.
#[derive(Debug, Args)]
pub struct FutureArgs {
    /// Path of the YAML config file
    #[arg(short, long, env = "NEVERMORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The search query, in the nevermore query language
    #[arg(value_name = "QUERY")]
    pub query: String,

    /// Path of the YAML config file
    #[arg(short, long, env = "NEVERMORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Format of the process' own logs (written to stderr)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `nevermore_collector=debug,info` (default: $RUST_LOG, else info)
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object a line
    Json,
}
