//! NBD over TLS: the server's X.509 credentials and the connection stream, which starts in
//! plaintext and may be upgraded by `NBD_OPT_STARTTLS`.
//!
//! # Design
//! rustls with the ring provider, TLS 1.2 and 1.3 (the NBD spec requires 1.2 and recommends
//! later versions). Clients are not asked for certificates: the secret export name is what
//! authorizes a session, and TLS keeps it (and the data) private.
//!
//! # Limitations
//! No TLS-PSK: rustls does not implement TLS 1.3 external pre-shared keys (rustls issue #174),
//! so `nbd-server`/`qemu-nbd` style PSK files are not accepted. No client-certificate checks and
//! no certificate reload without a restart.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::NbdTlsMode;

/// Why the TLS credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or parsed.
    #[error("Cannot read the NBD TLS certificate {0}")]
    Cert(PathBuf, #[source] rustls::pki_types::pem::Error),
    /// The certificate file holds no certificate.
    #[error("No certificate in {0}")]
    NoCert(PathBuf),
    /// The key file could not be read or parsed.
    #[error("Cannot read the NBD TLS private key {0}")]
    Key(PathBuf, #[source] rustls::pki_types::pem::Error),
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("Unusable NBD TLS certificate or key")]
    Config(#[source] rustls::Error),
}

/// TLS policy and credentials of the NBD server.
#[derive(Clone)]
pub struct NbdTls {
    /// Off, optional or required.
    pub mode: NbdTlsMode,
    /// Present unless the mode is off.
    acceptor: Option<TlsAcceptor>,
}

impl std::fmt::Debug for NbdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdTls").field("mode", &self.mode).finish()
    }
}

impl NbdTls {
    /// No TLS.
    pub fn off() -> NbdTls {
        NbdTls {
            mode: NbdTlsMode::Off,
            acceptor: None,
        }
    }

    /// `mode` with the certificate chain and key read from PEM files.
    pub fn load(mode: NbdTlsMode, cert: &Path, key: &Path) -> Result<NbdTls, TlsError> {
        if mode == NbdTlsMode::Off {
            return Ok(NbdTls::off());
        }
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Cert(cert.to_owned(), e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCert(cert.to_owned()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.to_owned(), e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(TlsError::Config)?;
        Ok(NbdTls {
            mode,
            acceptor: Some(TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// The acceptor, unless TLS is off.
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// Whether clients must upgrade before anything else.
    pub fn required(&self) -> bool {
        self.mode == NbdTlsMode::Require
    }
}

/// One NBD connection: plaintext TCP, TLS over it after `NBD_OPT_STARTTLS`, or a Unix socket.
#[derive(Debug)]
pub enum NbdStream {
    /// Plaintext.
    Plain(TcpStream),
    /// Upgraded to TLS (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
    /// A Unix socket (`--nbd-socket`): local only, guarded by the socket file's permissions.
    Unix(UnixStream),
}

impl NbdStream {
    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        matches!(self, NbdStream::Tls(_))
    }

    /// Whether `--nbd-tls require` is met: TLS is active, or the connection came over the Unix
    /// socket, which never leaves the machine and only those the file's mode lets in can open.
    pub fn is_protected(&self) -> bool {
        matches!(self, NbdStream::Tls(_) | NbdStream::Unix(_))
    }
}

impl AsyncRead for NbdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NbdStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NbdStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            NbdStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NbdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NbdStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NbdStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            NbdStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NbdStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NbdStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            NbdStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NbdStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NbdStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            NbdStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
