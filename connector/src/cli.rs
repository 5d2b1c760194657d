//! The command line: `pgkafka-connector run -f FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::builder::Engine;
use crate::engine::Limits;
use crate::http::{self, HttpState};
use crate::source::tls;

#[derive(Parser)]
#[command(version, about = "PostgreSQL logical replication into Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream changes as the manifest describes, until SIGINT or SIGTERM.
    Run {
        /// A PgKafkaConnector manifest (the YAML you would kubectl apply).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Directory holding secrets as DIR/<secret name>/<key>.
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// Address of /metrics, /healthz, /readyz and /status.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// How often the confirmed position is reported to PostgreSQL, in
        /// milliseconds (as pg_recvlogical's --status-interval).
        #[arg(long, default_value_t = 1000)]
        status_interval_ms: u64,
    },
    /// Parse and validate a manifest without connecting to anything.
    Check {
        /// The manifest.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Directory holding secrets as DIR/<secret name>/<key>.
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses the command line and runs it; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file, secrets_dir } => {
            match Engine::from_manifest(&file, secrets_dir.as_deref()) {
                Ok(engine) => {
                    println!(
                        "{}: valid ({} listeners)",
                        file.display(),
                        engine.spec().listeners.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            file,
            secrets_dir,
            http_addr,
            log_format,
            status_interval_ms,
        } => {
            init_logging(log_format);
            tls::install_default_provider();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let limits = Limits {
                status_interval: std::time::Duration::from_millis(status_interval_ms.max(10)),
                ..Limits::default()
            };
            match runtime.block_on(run(file, secrets_dir, http_addr, limits)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(
    file: PathBuf,
    secrets_dir: Option<PathBuf>,
    http_addr: SocketAddr,
    limits: Limits,
) -> Result<(), crate::error::Error> {
    let engine = Engine::from_manifest(&file, secrets_dir.as_deref())?.with_limits(limits);
    if engine.spec().state != pgkafka_crds::ConnectorState::Running {
        tracing::info!(state = ?engine.spec().state, "spec.state is not running: nothing to stream");
        return Ok(());
    }
    let bound = http::serve(
        http_addr,
        HttpState {
            status: engine.status(),
        },
    )
    .await?;
    tracing::info!(connector = %engine.name(), http = %bound, "starting");
    let status = engine.status();
    let (signalled, signal) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = signalled.send(());
    });
    let result = engine
        .run(async {
            let _ = signal.await;
            tracing::info!("signal received; stopping");
        })
        .await;
    if let Some(e) = result.as_ref().err().filter(|e| !e.is_retryable()) {
        // Exiting would only restart into the same fault (a crash loop under
        // Kubernetes). Stay up, not ready, with the reason in /status, until
        // a new configuration replaces this process.
        tracing::error!(halted = ?status.status().halted, "{e}; the slot holds every change not yet confirmed: waiting for a new configuration");
        let _ = watcher.await;
    }
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
