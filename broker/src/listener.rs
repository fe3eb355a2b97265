//! Serving a tonic router with a bound on connections and streams (issue 10: a node had no cap
//! on either, so idle sockets and HTTP/2 streams could take all of its memory).
//!
//! Each listener admits at most `max_connections` open connections: one more is accepted and
//! closed at once (the peer sees the connection reset, and a client retries elsewhere), so a
//! flood cannot queue up in the kernel's backlog either. Each connection may hold at most
//! `max_streams` concurrent HTTP/2 streams (announced in SETTINGS, enforced by the HTTP/2
//! layer). The simulator's tonic has no sockets; there the router is served as before.

#[cfg(not(madsim))]
use std::net::SocketAddr;
use std::time::Duration;

/// Connection and stream bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams: u32,
}

impl Default for ListenLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_streams: 1_000,
        }
    }
}

/// A server builder with the per-connection bounds set (and keep-alives, so dead peers'
/// connections are noticed and their slots freed).
pub fn builder(l: &ListenLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(l.max_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
}

/// The internal listener's builder: [`builder`] plus the cluster credential's head check
/// before any request body is read (real builds; see `raftmq_proto::auth::layer`).
#[cfg(not(madsim))]
pub fn internal_builder(
    l: &ListenLimits,
    key: raftmq_proto::auth::ClusterKey,
) -> tonic::transport::Server<
    tower_layer::Stack<raftmq_proto::auth::layer::AuthLayer, tower_layer::Identity>,
> {
    builder(l).layer(raftmq_proto::auth::layer::AuthLayer::new(
        key,
        "/raftmq.",
        raft_store::rt::wall_ms,
    ))
}

/// The internal listener's builder (simulator: the handlers check credentials).
#[cfg(madsim)]
pub fn internal_builder(
    l: &ListenLimits,
    _key: raftmq_proto::auth::ClusterKey,
) -> tonic::transport::Server {
    builder(l)
}

/// Binds `addr` and yields its connections, at most `max` open at once.
#[cfg(not(madsim))]
pub async fn incoming(addr: SocketAddr, max: usize) -> Result<real::Limited, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(real::Limited::new(listener, max))
}

/// Serves a tonic router on an address until a shutdown future completes, with at most
/// `max_connections` open connections (real builds). A macro, because tonic's serve methods
/// carry bounds on the router's layers that a function would have to repeat.
#[macro_export]
macro_rules! serve_limited {
    ($router:expr, $addr:expr, $limits:expr, $shutdown:expr) => {{
        #[cfg(not(madsim))]
        let r = match $crate::listener::incoming($addr, $limits.max_connections).await {
            Ok(incoming) => $router
                .serve_with_incoming_shutdown(incoming, $shutdown)
                .await
                .map_err(|e| format!("{}: {e}", $addr)),
            Err(e) => Err(e),
        };
        #[cfg(madsim)]
        let r = $router
            .serve_with_shutdown($addr, $shutdown)
            .await
            .map_err(|e| format!("{}: {e}", $addr));
        r
    }};
}

#[cfg(not(madsim))]
pub mod real {
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Context;
    use std::task::Poll;

    use futures::Stream;
    use tokio::io::AsyncRead;
    use tokio::io::AsyncWrite;
    use tokio::io::ReadBuf;
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;
    use tokio::sync::OwnedSemaphorePermit;
    use tokio::sync::Semaphore;
    use tonic::transport::server::Connected;
    use tonic::transport::server::TcpConnectInfo;

    /// Accepted connections, each holding a permit until it closes.
    pub struct Limited {
        listener: TcpListener,
        permits: Arc<Semaphore>,
    }

    impl Limited {
        pub fn new(listener: TcpListener, max: usize) -> Self {
            Self {
                listener,
                permits: Arc::new(Semaphore::new(max)),
            }
        }
    }

    /// A connection and its place among the admitted ones.
    pub struct Conn {
        io: TcpStream,
        _permit: OwnedSemaphorePermit,
    }

    impl Stream for Limited {
        type Item = io::Result<Conn>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            loop {
                match this.listener.poll_accept(cx) {
                    Poll::Pending => return Poll::Pending,
                    // Accept errors (EMFILE, a reset before accept) are transient: yield and
                    // try again rather than end the listener.
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "accept failed");
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok((io, peer))) => match this.permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let _ = io.set_nodelay(true);
                            return Poll::Ready(Some(Ok(Conn {
                                io,
                                _permit: permit,
                            })));
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "connection refused: too many open connections");
                            drop(io);
                        }
                    },
                }
            }
        }
    }

    impl Connected for Conn {
        type ConnectInfo = TcpConnectInfo;

        fn connect_info(&self) -> TcpConnectInfo {
            self.io.connect_info()
        }
    }

    impl AsyncRead for Conn {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Conn {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }
    }
}
