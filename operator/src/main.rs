//! `authplane-operator`: see `authplane-operator --help`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use authplane_operator::leader::LeaseConfig;
use authplane_operator::render::shards::Sharding;
use authplane_operator::run::{Settings, run};
use authplane_operator::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "authplane-operator", version, about = "Runs AuthPlane authorization servers on Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Reconcile AuthServer, ProtectedResource and OAuthClient objects.
    // Boxed: the flags outgrew the other variant (clippy::large_enum_variant).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (YAML) to install with `kubectl apply -f -`.
    Crds,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AUTHPLANE_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "AUTHPLANE_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Server image for AuthServers without spec.image.
    #[arg(long, env = "AUTHPLANE_OPERATOR_SERVER_IMAGE", default_value = concat!("ghcr.io/authplane/authserver:", env!("CARGO_PKG_VERSION")))]
    server_image: String,
    /// Leader election Lease name; with --no-leader-election every replica acts.
    #[arg(long, env = "AUTHPLANE_OPERATOR_LEASE_NAME", default_value = "authplane-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds; renewed every third of it.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Run without leader election (one replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Log level or filter directive.
    #[arg(long, env = "AUTHPLANE_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[arg(long, env = "AUTHPLANE_OPERATOR_LOG_FORMAT", value_enum, default_value = "logfmt")]
    log_format: LogFormat,
    /// Secrets the registry (ProtectedResources, OAuthClients) of each
    /// AuthServer is split into; changing it rolls the server pods.
    #[arg(long, env = "AUTHPLANE_OPERATOR_REGISTRY_SHARDS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=64))]
    registry_shards: u32,
    /// Largest registry shard written, in bytes; objects that do not fit are
    /// left out with `Ready=False ConfigTooLarge`. At most 900 KiB (a Secret
    /// holds 1 MiB).
    #[arg(long, env = "AUTHPLANE_OPERATOR_MAX_SHARD_BYTES", default_value_t = 512 * 1024, value_parser = clap::value_parser!(u64).range(1024..=921_600))]
    max_shard_bytes: u64,
    /// Seconds between two fetches of the same diagnostic URL: an
    /// AuthServer's discovery (`IssuerReachable`) and a ProtectedResource's
    /// PRM (`PRMVerified`). Each fetch times out after 5 s, reads at most
    /// 64 KiB, and at most 8 run at once.
    #[arg(long, env = "AUTHPLANE_OPERATOR_PROBE_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    probe_interval: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match authplane_crds::crd_files() {
            Ok(files) => {
                for (_, yaml) in files {
                    print!("---\n{yaml}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("authplane-operator: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let RunArgs {
                namespace,
                metrics_addr,
                server_image,
                lease_name,
                lease_namespace,
                identity,
                lease_seconds,
                no_leader_election,
                log_level,
                log_format,
                registry_shards,
                max_shard_bytes,
                probe_interval,
            } = *args;
            telemetry::init(&log_level, log_format);
            let identity = identity.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            let lease = (!no_leader_election).then(|| LeaseConfig {
                namespace: lease_namespace,
                name: lease_name,
                identity,
                duration: Duration::from_secs(lease_seconds.max(3)),
            });
            let sharding = Sharding {
                count: registry_shards,
                max_bytes: usize::try_from(max_shard_bytes).unwrap_or(Sharding::default().max_bytes),
            };
            let settings = Settings {
                namespace,
                metrics_addr,
                server_image,
                lease,
                sharding,
                probe_interval: Duration::from_secs(probe_interval),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("authplane-operator: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = "ErrOperator", detail = %e, "authplane-operator stopped");
                    eprintln!("authplane-operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
