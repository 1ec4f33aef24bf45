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

    /// Relay records from Kafka to Elasticsearch or the embedded index
    #[command(
        long_about = "Consume the Kafka topics the collectors write, in a consumer group, \
        and write the records to the sinks the `relay` section names (Elasticsearch, the \
        embedded index, a file). Offsets are committed only after every sink acknowledged, so \
        nothing is lost across crashes and rebalances; Elasticsearch `_id`s and the index's \
        per-stream sequence turn replays into no duplicate. Runs until SIGTERM or SIGINT."
    )]
    Relay(CollectArgs),

    /// Serve log search over HTTP (metrics and dashboards are planned)
    #[command(
        long_about = "Run the query service: the log search API over Elasticsearch or \
        the embedded index (`/api/v1/logs/search`, `histogram`, `fields/<field>/values`, \
        `context`, `tail`). Reads the `serve` section of the config file. The Prometheus-compatible \
        metrics API and the dashboards are planned."
    )]
    Serve(ServeArgs),

    /// Collect, index and serve search in one process (with no config: a live demo)
    #[command(
        long_about = "Run the collector, the embedded index and the query service in one \
        process: the zero-setup default for a single machine. With --config, the file's \
        `sources`, `sinks` and `serve` sections are used (an embedded sink is added when the \
        file has none). Without it, a demo runs: sample pods plus a live generator writing \
        CRI logs with real rotation into a temporary directory."
    )]
    Up(UpArgs),

    /// Search logs from the terminal through the search API
    #[command(
        long_about = "Search logs with the nevermore query language through the search \
        API of a running `nevermore serve` or `nevermore up`, and print the matching records, \
        newest first. Example: nevermore search 'namespace:shop level:>=warn \"connection refused\"' --since 1h"
    )]
    Search(SearchArgs),
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Path of the YAML config file (its `serve` section)
    #[arg(short, long, env = "NEVERMORE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Path of the YAML config file; without it the bundled demo runs
    #[arg(short, long, env = "NEVERMORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the search API in demo mode
    #[arg(long, default_value = "127.0.0.1:9800", value_name = "ADDR")]
    pub listen: String,

    /// Lines a second the demo generator writes
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub demo_rate: u32,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The search query, e.g. `namespace:shop -pod:canary-* level:>=warn "connection refused"`
    #[arg(value_name = "QUERY", default_value = "")]
    pub query: String,

    /// How far back to search: a number and s, m, h or d
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub since: String,

    /// End of the range (RFC 3339, unix seconds, `now-<duration>`); default now
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Records to print at most
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    pub limit: usize,

    /// Oldest first
    #[arg(long)]
    pub reverse: bool,

    /// Keep printing new records as they arrive (like `tail -f`)
    #[arg(short, long)]
    pub follow: bool,

    /// Print records as NDJSON
    #[arg(long)]
    pub json: bool,

    /// Colour the output
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// The search API
    #[arg(
        long,
        env = "NEVERMORE_SERVER",
        default_value = "http://127.0.0.1:9800",
        value_name = "URL"
    )]
    pub server: String,

    /// Bearer token (when the server has tenants)
    #[arg(
        long,
        env = "NEVERMORE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn parse_duration(s: &str) -> Result<String, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    if num.is_empty() || !matches!(unit, "s" | "m" | "h" | "d") {
        return Err(format!("`{s}` is not a duration such as 15m, 1h or 7d"));
    }
    Ok(s.to_string())
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
