//! The NBD accept loop: caps connections, times out handshakes (TLS included), drains sessions
//! on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::handshake::{self, HandshakeError};
use super::session::{self, SessionConfig};
use super::tls::{NbdStream, NbdTls};
use crate::exports::Exports;

/// NBD server settings.
#[derive(Debug, Clone)]
pub struct NbdConfig {
    /// A client that has not finished negotiating after this long is disconnected.
    pub handshake_timeout: Duration,
    /// Idle sessions (nothing in flight, no request) close after this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// STARTTLS policy and credentials.
    pub tls: NbdTls,
    /// Large cached reads go out with `sendfile` (`--nbd-sendfile`).
    pub sendfile: bool,
}

/// Where NBD connections come from.
#[derive(Debug)]
pub enum NbdListener {
    /// `--nbd-addr`.
    Tcp(TcpListener),
    /// `--nbd-socket`.
    Unix(UnixListener),
}

impl NbdListener {
    /// The next connection and who it is from.
    async fn accept(&self) -> std::io::Result<(NbdStream, String)> {
        match self {
            NbdListener::Tcp(l) => {
                let (sock, peer) = l.accept().await?;
                let _ = sock.set_nodelay(true);
                Ok((NbdStream::Plain(sock), peer.to_string()))
            }
            NbdListener::Unix(l) => {
                let (sock, _) = l.accept().await?;
                let peer = sock
                    .peer_cred()
                    .map_or_else(|_| "unix".to_owned(), |c| format!("unix pid {:?}", c.pid()));
                Ok((NbdStream::Unix(sock), peer))
            }
        }
    }
}

/// Serves NBD on `listener` until `shutdown` turns true, then waits for sessions to finish
/// their in-flight requests. `permits` caps the connections of every listener together.
pub async fn run(
    listener: NbdListener,
    exports: Arc<Exports>,
    cfg: NbdConfig,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    backoff = Duration::from_millis(1);
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::warn!(%peer, max = cfg.max_connections, "NBD connection cap reached; refusing");
                        drop(sock);
                        continue;
                    };
                    sessions.spawn(handle(sock, peer, Arc::clone(&exports), cfg.clone(), shutdown.clone(), permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "NBD accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            _ = shutdown.changed() => break,
        }
        while sessions.try_join_next().is_some() {}
    }
    while sessions.join_next().await.is_some() {}
}

async fn handle(
    sock: NbdStream,
    peer: String,
    exports: Arc<Exports>,
    cfg: NbdConfig,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let shutting_down = || *shutdown.borrow();
    let negotiated = tokio::time::timeout(
        cfg.handshake_timeout,
        handshake::negotiate(sock, &exports, &cfg.tls, shutting_down),
    )
    .await;
    let (neg, stream) = match negotiated {
        Ok(Ok(n)) => n,
        Ok(Err(HandshakeError::Aborted)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "NBD handshake ended");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "NBD handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, volume_id = %neg.export.volume_id, structured = neg.structured, tls = stream.is_tls(), "NBD session started");
    let scfg = SessionConfig {
        idle_timeout: cfg.idle_timeout,
        sendfile: cfg.sendfile,
    };
    if let Err(e) = session::serve(stream, neg, scfg, shutdown).await {
        tracing::debug!(%peer, error = %e, "NBD session ended with a socket error");
    }
}
