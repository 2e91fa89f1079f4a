//! `assay serve`: the API and workers in one process, on one store (by default SQLite in the
//! data folder), with an admin key made on first start.

use crate::node::{NodeArgs, WorkerArgs, terminated};
use anyhow::{Context, Result};
use assay_domain::LimitPolicy;
use assay_sandbox::CancellationToken;
use assay_server::AppState;
use assay_service::keys::{bootstrap_admin_key, install_operator_admin_key};
use assay_service::{Service, ServiceConfig};
use assay_store::bus::LocalBus;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port and prints it).
    #[arg(long, default_value = "127.0.0.1:8080", env = "ASSAY_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

pub async fn run(a: ServeArgs) -> Result<()> {
    let settings = Arc::new(a.node.settings()?);
    let retention = crate::server_settings::load_all(a.node.config.as_deref())?.retention;
    assay_server::http::check(&settings.http)?;
    let jwt = match &settings.jwt {
        Some(j) => {
            let v = Arc::new(assay_server::jwt::JwtVerifier::new(j)?);
            v.prime().await;
            eprintln!("assay: accepting JWTs from issuer {:?}", j.issuer);
            Some(v)
        }
        None => None,
    };
    let bus = LocalBus::new();
    let store = crate::store::open_node(&a.node.store.url(), &bus).await?;
    let blobs = crate::store::open_blobs(&a.node.store.blob_url()?).await?;
    let data = &a.node.store.data;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    if let Some(key) = &settings.admin.key {
        // Before the bootstrap: with an operator key, no admin.key file is generated.
        match install_operator_admin_key(store.as_ref(), key.expose())
            .await
            .map_err(anyhow::Error::msg)?
        {
            Some(id) => eprintln!("assay: installed the configured admin key as {id}"),
            None => eprintln!("assay: the configured admin key is installed"),
        }
    }
    match bootstrap_admin_key(store.as_ref(), data)
        .await
        .map_err(anyhow::Error::msg)?
    {
        Some(path) => eprintln!(
            "assay: created an admin API key; it is in {} (mode 0600)",
            path.display()
        ),
        None if settings.admin.key.is_some() => {}
        None => {
            let here = data.join("admin.key");
            if here.is_file() {
                eprintln!(
                    "assay: API keys exist; the first admin key was written to {} on first start",
                    here.display()
                );
            } else {
                eprintln!(
                    "assay: API keys exist in the store; the first admin key is in the data folder \
                     of the server that started first (admin.key), or make one with \
                     `assay admin create-key`"
                );
            }
        }
    }
    let shutdown = CancellationToken::new();
    let workers = a
        .worker
        .start(
            store.clone(),
            Some(blobs.clone()),
            bus.clone(),
            &settings,
            shutdown.clone(),
        )
        .await?;
    let sweeper = retention.map(|policy| {
        crate::retention::start(store.clone(), blobs.clone(), policy, shutdown.clone())
    });
    let config = ServiceConfig {
        limits: LimitPolicy::default(),
        retry: a.worker.retry(),
        quotas: settings.quotas.clone(),
    };
    let state = AppState {
        service: Service::with_blobs(store, bus, config, blobs),
        settings,
        jwt,
    };
    let listen = a.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to learn the port (with --listen 127.0.0.1:0).
    println!("assay: listening on http://{addr}");
    let app = assay_server::router(state);
    let stop = shutdown.clone();
    // With the peer's address: the audit log records it as each call's source.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        terminated().await;
        eprintln!(
            "assay: shutting down: no new work is claimed; running evaluations finish or are \
             handed back"
        );
        stop.cancel();
    })
    .await?;
    shutdown.cancel();
    if let Some(t) = workers {
        let _ = t.await;
    }
    if let Some(t) = sweeper {
        let _ = t.await;
    }
    Ok(())
}
