//! The NBD server: our own codec of the NBD protocol (fixed newstyle, structured replies,
//! `base:allocation`), serving each attachment under its secret export name.
//!
//! * [`wire`]: constants and byte layouts.
//! * [`handshake`]: option negotiation.
//! * [`session`]: the transmission phase of one connection.
//! * [`server`]: accept loop, connection cap, handshake timeout, drain on shutdown.
//! * [`tls`]: STARTTLS credentials and the connection stream: plaintext TCP, TLS, or a Unix socket.

pub mod handshake;
pub mod server;
pub mod session;
pub mod tls;
pub mod wire;

pub use server::{NbdConfig, NbdListener, run};
pub use tls::{NbdStream, NbdTls, TlsError};
