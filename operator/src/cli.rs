//! The command line of `pgkafka-operator`: flags, logging, then the
//! controller (behind a Lease when asked).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::engines::EngineAddresses;
use crate::probe::HttpProbe;
use crate::{controller, http, leader, metrics::Metrics, resources::Settings};

#[derive(Parser)]
#[command(version, about = "Kubernetes operator for PgKafkaConnector resources")]
struct Args {
    /// Namespaces to watch (repeat it); all namespaces when omitted.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Image of the engine pods.
    #[arg(
        long,
        env = "PGKAFKA_ENGINE_IMAGE",
        default_value = "ghcr.io/pgkafka/pgkafka:latest"
    )]
    engine_image: String,
    /// Pull policy of the engine image.
    #[arg(
        long,
        env = "PGKAFKA_ENGINE_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    engine_image_pull_policy: String,
    /// Address of /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Hold a Lease before reconciling (for more than one replica).
    #[arg(long)]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How often a connector's status is refreshed, in seconds.
    #[arg(long, default_value_t = 15)]
    refresh_seconds: u64,
    /// For the API-server tests, whose engines are local processes: read
    /// each engine's address from `DIR/<namespace>/<engine service name>`
    /// (`host:port`). An API server refuses loopback addresses in
    /// EndpointSlices, so those tests cannot publish them there.
    #[arg(long, hide = true)]
    engine_endpoints_dir: Option<PathBuf>,
}

/// Parses the command line and runs the operator; the binary's whole `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .json()
        .init();
    pgkafka_postgres::tls::install_default_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = Metrics::default();
        let client = match counted_client(&metrics).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = http::serve(args.metrics_addr, metrics.clone()).await {
            tracing::error!(error = %e, addr = %args.metrics_addr, "cannot serve metrics");
            return ExitCode::FAILURE;
        }
        let leadership = if args.leader_election {
            let me = std::env::var("POD_NAME").unwrap_or_else(|_| format!("pgkafka-operator-{}", std::process::id()));
            Some(leader::lead(client.clone(), &args.lease_namespace, "pgkafka-operator", &me, leader::Timing::default()).await)
        } else {
            None
        };
        let settings = Settings {
            engine_image: args.engine_image,
            image_pull_policy: args.engine_image_pull_policy,
        };
        let probe = HttpProbe {
            addresses: EngineAddresses::watch(&client, &args.namespaces),
            endpoints_dir: args.engine_endpoints_dir,
        };
        let refresh = Duration::from_secs(args.refresh_seconds.max(1));
        let ctx = controller::context(client, settings, metrics, probe, refresh);
        if args.namespaces.is_empty() {
            controller::run(ctx, None).await;
        } else {
            futures::future::join_all(args.namespaces.into_iter().map(|ns| controller::run(ctx.clone(), Some(ns)))).await;
        }
        // The controllers stop on SIGTERM or Ctrl-C.
        if let Some(leadership) = leadership {
            leadership.release().await;
        }
        ExitCode::SUCCESS
    })
}

/// The API client (in-cluster config or KUBECONFIG), each request counted
/// by verb in [`Metrics::api_requests`].
async fn counted_client(metrics: &Metrics) -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    let counter = metrics.api_requests.clone();
    let count =
        tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
            counter
                .with_label_values(&[crate::metrics::api_verb(&request)])
                .inc();
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}
