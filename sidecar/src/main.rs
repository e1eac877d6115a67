//! `tollgate-sidecar` binary: `serve` runs the HTTP service; the other
//! commands work on the database directly.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use tollgate_sidecar::audit::checkpoint::Signer;
use tollgate_sidecar::cli::{self, Cli, Command, ServeArgs};
use tollgate_sidecar::clock::Clock;
use tollgate_sidecar::http::{self, AppState};
use tollgate_sidecar::residency::Pins;
use tollgate_sidecar::store::{display_db, Store};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its actions at info; CLI commands report through their
    // own output, so only warnings and errors are logged there by default.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let pins = match &cli.gateway_config {
        Some(path) => Some(Arc::new(Pins::load(path).context("--gateway-config")?)),
        None => None,
    };
    let db = &cli.db;
    let store = || offline_store(db, pins.clone());
    let out = &mut std::io::stdout();
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(db, args, pins))
        }
        Command::Keys(cmd) => cli::run_keys(&store()?, cmd, out),
        Command::Teams(cmd) => cli::run_teams(&store()?, cmd, out),
        Command::Budgets(cmd) => cli::run_budgets(&store()?, cmd, out),
        Command::Prices(cmd) => cli::run_prices(&store()?, cmd, out),
        Command::Usage(args) => cli::run_usage(&store()?, args, out),
        Command::Residency(cmd) => cli::run_residency(&store()?, cmd, out),
        Command::Audit(args) => cli::run_audit(db, args, &mut std::io::stdin(), out),
    }
}

fn open_store(db: &str, clock: Clock, pins: Option<Arc<Pins>>) -> Result<Store> {
    let store = Store::open(db, Arc::new(clock))
        .with_context(|| format!("opening database {}", display_db(db)))?;
    Ok(match pins {
        Some(pins) => store.with_pins(pins),
        None => store,
    })
}

fn offline_store(db: &str, pins: Option<Arc<Pins>>) -> Result<Store> {
    open_store(db, Clock::system(), pins)
}

async fn serve(db: &str, args: ServeArgs, pins: Option<Arc<Pins>>) -> Result<()> {
    let Some(master_key) = args.master_key.filter(|k| !k.trim().is_empty()) else {
        bail!(
            "no master key configured: set TOLLGATE_MASTER_KEY (or pass --master-key) to a long random \
             secret, e.g. `export TOLLGATE_MASTER_KEY=$(openssl rand -hex 32)`; admin API calls must send \
             it as `Authorization: Bearer <master key>`"
        );
    };
    let service_token = service_token(&args.service_token_env, &master_key)?;
    let clock = if args.test_clock {
        warn!("test clock on: POST /admin/clock moves the sidecar's time (never in production)");
        Clock::shifted()
    } else {
        Clock::system()
    };
    // Opening may wait on the network (PostgreSQL): keep it off the async workers.
    let db_owned = db.to_owned();
    let store = tokio::task::spawn_blocking(move || {
        let store = open_store(&db_owned, clock, pins)?;
        check_residency(&store)?;
        Ok::<_, anyhow::Error>(store)
    })
    .await
    .context("opening the database")??
    .with_lease_ttl_s(args.lease_ttl_s)
    .context("--lease-ttl-s / TOLLGATE_LEASE_TTL_S")?
    .with_audit_log(args.audit_log);
    let backend = store.backend_name();
    let store = Arc::new(store);
    let key_path = args.audit_key.resolve(db);
    let signer = if args.audit_log {
        // A key named with --audit-key / TOLLGATE_AUDIT_KEY (in Kubernetes,
        // the mounted Secret) is required: a replica whose key is missing or
        // refused must not quietly run unsigned. At the default path the
        // gateway still serves without one and the log still grows; `audit
        // checkpoint` with the key signs it later.
        match Signer::load_or_create(&key_path) {
            Ok(signer) => {
                info!(
                    audit_key = %key_path.display(), audit_public_key = %signer.verifier(),
                    interval = ?args.audit_checkpoint_interval, "audit checkpoints on"
                );
                Some(Arc::new(signer))
            }
            Err(e) if args.audit_key.path.is_some() => {
                return Err(e).context(
                    "the audit key that --audit-key / TOLLGATE_AUDIT_KEY names is unusable, so \
                     serve does not start",
                );
            }
            Err(e) => {
                error!(
                    error = %e,
                    "audit checkpoints are off: no usable key (set --audit-key / TOLLGATE_AUDIT_KEY \
                     to a writable path or an existing key file)"
                );
                None
            }
        }
    } else {
        warn!(
            "audit log off (--audit-log / TOLLGATE_AUDIT_LOG): the requests and leases this \
             sidecar settles are not logged, and it signs no checkpoints"
        );
        None
    };
    let checkpoints = signer.clone().map(|signer| {
        tokio::spawn(checkpoint_every(
            args.audit_checkpoint_interval,
            Arc::clone(&store),
            signer,
        ))
    });
    let state = AppState::new(Arc::clone(&store), &master_key, &service_token)
        .with_cache_bytes(args.cache_max_bytes);
    let app = http::router(state);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let listen = listener.local_addr().unwrap_or(args.listen);
    info!(
        listen = %listen, db = %display_db(db), backend, lease_ttl_s = args.lease_ttl_s,
        cache_max_bytes = args.cache_max_bytes, audit_log = args.audit_log,
        "tollgate-sidecar listening"
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed");
    // The last entries get their checkpoint before the process goes.
    if let (Some(task), Some(signer)) = (checkpoints, signer) {
        task.abort();
        checkpoint(store, signer).await;
    }
    served?;
    info!("tollgate-sidecar stopped");
    Ok(())
}

/// As Envoy refuses a pin no model serves, `serve` refuses a pinned team or
/// key whose own models leave it nothing in its regions.
fn check_residency(store: &Store) -> Result<()> {
    if !store.has_pins() {
        return Ok(());
    }
    let problems = store.residency_problems()?;
    if !problems.is_empty() {
        bail!(
            "the gateway's residency pins would refuse every request of these teams or keys; \
             change their models (`teams update NAME --models ...`) or the pins:\n  - {}",
            problems.join("\n  - ")
        );
    }
    info!("residency: every pinned team and key has a model served in its regions");
    Ok(())
}

/// Signs an audit checkpoint every `interval` if the log grew.
async fn checkpoint_every(interval: Duration, store: Arc<Store>, signer: Arc<Signer>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        checkpoint(Arc::clone(&store), Arc::clone(&signer)).await;
    }
}

async fn checkpoint(store: Arc<Store>, signer: Arc<Signer>) {
    match tokio::task::spawn_blocking(move || store.audit_checkpoint(&signer)).await {
        Ok(Ok(Some(note))) => {
            let size = note.lines().nth(1).unwrap_or_default();
            info!(size = %size, "audit checkpoint signed");
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => warn!(error = %e, "cannot sign an audit checkpoint"),
        Err(e) => warn!(error = %e, "audit checkpoint task failed"),
    }
}

/// The filter's service token from the environment variable `var`, checked
/// like the master key: `serve` does not start without a usable one.
fn service_token(var: &str, master_key: &str) -> Result<String> {
    let token = match std::env::var(var) {
        Ok(token) if !token.is_empty() => token,
        Ok(_) | Err(std::env::VarError::NotPresent) => bail!(
            "no service token configured: set {var} to a random secret of at least {min} \
             characters, e.g. `export {var}=$(openssl rand -hex 32)`, for both tollgate-sidecar and \
             Envoy (its wasm VM lists {var} in `environment_variables.host_env_keys`); the filter \
             sends it as `Authorization: Bearer <token>` on every /v1/* call",
            min = http::MIN_SERVICE_TOKEN_LEN
        ),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{var} is not valid UTF-8; the service token must be printable ASCII")
        }
    };
    if let Err(problem) = http::check_service_token(&token, master_key) {
        bail!("the service token in {var} {problem}");
    }
    Ok(token)
}

/// Resolves on SIGINT or SIGTERM so in-flight requests can finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    info!("shutdown signal received; draining connections");
}
