//! `tollgate-sidecar` binary: `serve` runs the HTTP service; `keys` and
//! `teams` edit the database directly.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use tollgate_sidecar::cli::{self, Cli, Command, ServeArgs};
use tollgate_sidecar::http::{self, AppState};
use tollgate_sidecar::store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its actions at info; CLI commands report through their
    // own output, so only warnings and errors are logged there by default.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Keys(_) | Command::Teams(_) => "warn",
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
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(&cli.db, args))
        }
        Command::Keys(cmd) => cli::run_keys(&open_store(&cli.db)?, cmd, &mut std::io::stdout()),
        Command::Teams(cmd) => cli::run_teams(&open_store(&cli.db)?, cmd, &mut std::io::stdout()),
    }
}

fn open_store(db: &Path) -> Result<Store> {
    Store::open(db).with_context(|| format!("opening database {}", db.display()))
}

async fn serve(db: &Path, args: ServeArgs) -> Result<()> {
    let Some(master_key) = args.master_key.filter(|k| !k.trim().is_empty()) else {
        bail!(
            "no master key configured: set TOLLGATE_MASTER_KEY (or pass --master-key) to a long random \
             secret, e.g. `export TOLLGATE_MASTER_KEY=$(openssl rand -hex 32)`; admin API calls must send \
             it as `Authorization: Bearer <master key>`"
        );
    };
    let store = Arc::new(open_store(db)?);
    let app = http::router(AppState::new(store, &master_key));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    info!(listen = %args.listen, db = %db.display(), "tollgate-sidecar listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    info!("tollgate-sidecar stopped");
    Ok(())
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
