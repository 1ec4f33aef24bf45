//! `nevermore`: the one binary of the collector, relay and query service.

mod cli;
mod demo;
mod search;

// mimalloc: the query service allocates and frees label sets by the million per request (decode,
// dedup, evaluation); glibc's malloc spent as long freeing them as dedup spent merging. Built
// without transparent huge pages (`no_thp`): with them the collector's peak RSS at 1,000 streams
// was 60 MiB instead of 32, each touched arena page becoming 2 MiB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::Parser as _;
use cli::{CheckConfigArgs, Cli, CollectArgs, Command, LogArgs, LogFormat, ServeArgs, UpArgs};
use nevermore_collector::config::{CollectorConfig, EmbeddedSinkConfig, SinkConfig, SinkKind};
use nevermore_query::config::{LogsConfig, ServeConfig};
use nevermore_query::logs::Backend;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
        Command::Relay(args) => match relay(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("nevermore relay: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => report("serve", serve(args)),
        Command::Up(args) => report("up", up(args)),
        Command::Search(args) => report(
            "search",
            runtime().and_then(|rt| rt.block_on(search::run(args))),
        ),
    }
}

fn report(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nevermore {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nevermore")
        .build()
        .context("cannot start the tokio runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = nevermore_query::config::load(&args.config)?;
    init_tracing(&args.log)?;
    runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        let backend = open_backend(&cfg)?;
        let listener = bind(&cfg).await?;
        serve_until(listener, cfg, backend, shutdown).await
    })
}

fn open_backend(cfg: &ServeConfig) -> anyhow::Result<Backend> {
    Ok(match &cfg.logs {
        LogsConfig::Embedded { path } => {
            let index = nevermore_index::LogIndex::open(path)?;
            Backend::Embedded(nevermore_query::logs::embedded::EmbeddedBackend::new(
                index,
            )?)
        }
        LogsConfig::Elasticsearch {
            endpoints,
            index,
            username,
            password,
            bearer_token,
            request_timeout,
        } => {
            use nevermore_query::logs::elasticsearch::{EsAuth, EsBackend, EsTimeouts};
            let auth = match (username, bearer_token) {
                (Some(u), _) => Some(EsAuth::Basic {
                    username: u.clone(),
                    password: password.clone().unwrap_or_default(),
                }),
                (None, Some(t)) => Some(EsAuth::Bearer { token: t.clone() }),
                (None, None) => None,
            };
            let timeouts = EsTimeouts {
                request: *request_timeout,
                ..EsTimeouts::default()
            };
            Backend::Elasticsearch(EsBackend::new(
                endpoints.clone(),
                index.clone(),
                auth,
                timeouts,
            )?)
        }
    })
}

async fn bind(cfg: &ServeConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))
}

async fn serve_until(
    listener: tokio::net::TcpListener,
    cfg: ServeConfig,
    backend: Backend,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = nevermore_query::metrics::Metrics::from_config(&cfg.metrics)
        .context("cannot set up the metric upstreams")?;
    tracing::info!(
        addr = %cfg.listen,
        metric_upstreams = cfg.metrics.upstreams.len(),
        "query service listening"
    );
    let state = nevermore_query::http::AppState::new(backend, metrics, cfg);
    nevermore_query::http::serve(listener, state, shutdown)
        .await
        .context("search API failed")
}

/// `up`: the collector with an embedded sink, and the query service on the same index.
fn up(args: UpArgs) -> anyhow::Result<()> {
    let (text, file, demo) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
            None,
        ),
        None => {
            let demo = demo::prepare(&args.listen).context("cannot prepare the demo")?;
            (demo.config_yaml.clone(), "<demo>".to_string(), Some(demo))
        }
    };
    let loaded = match nevermore_collector::config::load_str(&text, &file) {
        Ok(l) => l,
        Err(errors) => anyhow::bail!("{errors}"),
    };
    let mut collector = loaded.collector;
    let mut serve_cfg = nevermore_query::config::load_str(&text, &file)?;
    let index_dir = ensure_embedded_sink(&mut collector);
    if let LogsConfig::Elasticsearch { .. } = serve_cfg.logs {
        eprintln!(
            "nevermore up: serve.logs names Elasticsearch; `up` searches its own embedded index \
             ({}); use `nevermore serve` for Elasticsearch",
            index_dir.display()
        );
    }
    serve_cfg.logs = LogsConfig::Embedded {
        path: index_dir.clone(),
    };
    init_tracing(&args.log)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let result = runtime()?.block_on(async {
        let shutdown = shutdown_signal()?;
        // Open (or create) the index before the collector takes its writer lock.
        let index = nevermore_index::LogIndex::open(&index_dir)?;
        let backend = Backend::Embedded(nevermore_query::logs::embedded::EmbeddedBackend::new(
            index,
        )?);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let listen = serve_cfg.listen;
        let mut stop_serve = stop_rx.clone();
        // Bound before anything starts: a taken port fails `up` at once.
        let listener = bind(&serve_cfg).await?;
        let server = tokio::spawn(serve_until(listener, serve_cfg, backend, async move {
            let _ = stop_serve.changed().await;
        }));
        let generator = demo.as_ref().map(|d| {
            tokio::spawn(demo::generate(
                d.pods_dir.clone(),
                args.demo_rate,
                stop_rx.clone(),
            ))
        });
        if let Some(d) = &demo {
            eprintln!(
                "nevermore up: demo logs in {}, searchable within seconds:\n  \
                 nevermore search 'level:>=warn' --since 1h\n  \
                 nevermore search 'namespace:shop \"connection refused\"' --follow\n  \
                 curl 'http://{listen}/api/v1/logs/search?q=level:error&limit=5'\n  \
                 curl 'http://{listen}/api/v1/query?query=sum+by+(namespace)(rate(container_cpu_usage_seconds_total[5m]))'\n  \
                 curl 'http://{listen}/api/v1/dashboards/namespace?namespace=shop'",
                d.root.display()
            );
        }
        let mut stop_collect = stop_rx.clone();
        let collector_run = nevermore_collector::run(collector, async move {
            let _ = stop_collect.changed().await;
        });
        tokio::pin!(collector_run);
        tokio::select! {
            r = &mut collector_run => {
                let _ = stop_tx.send(true);
                r.context("collector failed")?;
            }
            () = shutdown => {
                let _ = stop_tx.send(true);
                collector_run.await.context("collector failed")?;
            }
        }
        if let Some(g) = generator {
            let _ = g.await;
        }
        match tokio::time::timeout(Duration::from_secs(10), server).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(anyhow::anyhow!("search API task failed: {e}")),
            Err(_) => Ok(()),
        }
    });
    if let Some(d) = demo {
        let _ = std::fs::remove_dir_all(&d.root);
    }
    result
}

/// The index directory of the first embedded sink, adding one (`local`, every source) when the
/// config has none.
fn ensure_embedded_sink(cfg: &mut CollectorConfig) -> PathBuf {
    let default_dir = nevermore_collector::run::default_index_dir(&cfg.data_dir);
    for s in &cfg.sinks {
        if let SinkKind::Embedded(e) = &s.kind {
            return e.path.clone().unwrap_or(default_dir);
        }
    }
    cfg.sinks.push(SinkConfig {
        id: "local".into(),
        inputs: cfg.sources.iter().map(|s| s.id.clone()).collect(),
        kind: SinkKind::Embedded(EmbeddedSinkConfig {
            path: None,
            max_age: None,
            max_bytes: None,
            commit_interval: Duration::from_secs(1),
            writer_memory_bytes: 64 << 20,
        }),
    });
    default_dir
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
    run_with_config(&args, "collector failed", |cfg, shutdown| async move {
        nevermore_collector::run(cfg, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

fn relay(args: CollectArgs) -> anyhow::Result<ExitCode> {
    run_with_config(&args, "relay failed", |cfg, shutdown| async move {
        nevermore_collector::relay::run(cfg, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

/// Loads the config (printing every problem and exiting 1 when it has errors), starts logging
/// and runs `job` until SIGTERM or SIGINT.
fn run_with_config<F, Fut>(
    args: &CollectArgs,
    failed: &'static str,
    job: F,
) -> anyhow::Result<ExitCode>
where
    F: FnOnce(
        CollectorConfig,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
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
    runtime()?.block_on(async {
        let shutdown = Box::pin(shutdown_signal()?);
        job(loaded.collector, shutdown).await.context(failed)
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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
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
