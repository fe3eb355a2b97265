//! `raftmq dev`: one process with a 3-replica group (three data directories under the data
//! dir), the Raft transport on loopback, and the v2 endpoint (plus admin) on one address.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use raft_store::disk::RealDisk;
use raft_store::group::GroupConfig;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::types::GroupId;
use raftmq_proto::admin::admin_server::AdminServer as AdminGrpc;
use raftmq_proto::v2::messaging_service_server::MessagingServiceServer;

use crate::admin::AdminServer;
use crate::batcher::BatchConfig;
use crate::core::BrokerCore;
use crate::core::BrokerSettings;
use crate::error::BrokerError;
use crate::error::Result;
use crate::replica::Replica;
use crate::service::MessagingServer;

/// What `raftmq dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Data directory; replica `i` lives in `<data_dir>/n<i>`.
    pub data_dir: PathBuf,
    /// The v2 (and admin) endpoint.
    pub listen: SocketAddr,
    /// First Raft port (replicas use this and the next two, on the listen address's host).
    pub raft_port: u16,
    /// Create topics and groups on first use.
    pub auto_create: bool,
}

/// Largest gRPC message accepted: bodies up to 4 MiB plus headers, with room (tonic's 4 MiB
/// default would reject a 4 MiB body).
pub const MAX_GRPC_MESSAGE: usize = 130 << 20;

/// Starts the dev cluster and serves until `shutdown` completes, then stops cleanly
/// (leadership handed over, replicas shut down).
pub async fn run(
    opts: DevOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let host = opts.listen.ip();
    let members: BTreeMap<u64, String> = (1..=3u64)
        .map(|i| {
            (
                i,
                SocketAddr::new(host, opts.raft_port + i as u16 - 1).to_string(),
            )
        })
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut raft_servers = Vec::new();
    let mut replicas = Vec::new();
    let channels = Channels::default();
    for (&id, addr) in &members {
        let registry = Registry::default();
        let listen: SocketAddr = addr.parse().expect("member address");
        let mut rx = stop_rx.clone();
        let reg = registry.clone();
        raft_servers.push(tokio::spawn(async move {
            raft_store::server::serve(listen, reg, 64 << 20, async move {
                let _ = rx.changed().await;
            })
            .await
        }));
        let cfg = GroupConfig::new(
            GroupId(1),
            id,
            members.clone(),
            opts.data_dir.join(format!("n{id}")),
        );
        let r = Replica::start(
            cfg,
            Arc::new(RealDisk::new()),
            &registry,
            &channels,
            BatchConfig::default(),
        )
        .await?;
        replicas.push(r);
    }
    let settings = BrokerSettings {
        auto_create: opts.auto_create,
        advertised: Some((opts.listen.ip().to_string(), opts.listen.port())),
        ..BrokerSettings::default()
    };
    let core = BrokerCore::new(settings, replicas.clone());
    tracing::info!(listen = %opts.listen, data = %opts.data_dir.display(), "raftmq dev: serving apache.rocketmq.v2");

    let mut rx = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        .add_service(
            MessagingServiceServer::new(MessagingServer::new(core.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(AdminGrpc::new(AdminServer::new(core.clone())))
        .serve_with_shutdown(opts.listen, async move {
            let _ = rx.changed().await;
        });
    let served = tokio::spawn(server);
    shutdown.await;
    tracing::info!("raftmq dev: stopping");
    // The leader goes first, while its followers can still take over.
    let mut order = replicas.clone();
    order.sort_by_key(|r| !r.is_leader());
    for r in order {
        r.shutdown().await?;
    }
    let _ = stop_tx.send(true);
    served
        .await
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?
        .map_err(|e| BrokerError::Unavailable(format!("v2 endpoint on {}: {e}", opts.listen)))?;
    for s in raft_servers {
        s.await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))??;
    }
    Ok(())
}
