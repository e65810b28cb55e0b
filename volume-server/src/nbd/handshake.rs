//! The NBD handshake: fixed newstyle negotiation up to the transmission phase.
//!
//! Supported options: `EXPORT_NAME`, `ABORT`, `LIST` (answers an empty list: export names are
//! secrets), `STARTTLS` (when TLS is configured), `INFO`, `GO`, `STRUCTURED_REPLY`,
//! `LIST_META_CONTEXT`, `SET_META_CONTEXT` (`base:allocation`). Anything else gets
//! `NBD_REP_ERR_UNSUP` and negotiation goes on. An option longer than [`MAX_OPTION_LEN`] is
//! skipped without buffering it and answered `NBD_REP_ERR_TOO_BIG`.
//!
//! # TLS
//! `STARTTLS` is answered `NBD_REP_ACK`, then the TLS handshake runs on the same socket and
//! option haggling resumes inside TLS, without a new greeting. State negotiated in plaintext
//! (structured replies, meta contexts) is forgotten: a man in the middle could have chosen it.
//! With [`NbdTlsMode::Require`] (the spec's FORCEDTLS) every option but `STARTTLS` and `ABORT`
//! gets `NBD_REP_ERR_TLS_REQD` before the upgrade, and `EXPORT_NAME`, which cannot fail
//! politely, ends the connection. The whole handshake, TLS included, runs under the server's
//! handshake timeout.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tls::{NbdStream, NbdTls};
use super::wire::*;
#[cfg(doc)]
use crate::config::NbdTlsMode;
use crate::exports::{Export, Exports};

/// Longest option payload we read into memory. Real options are far smaller: a name of at most
/// 4 KiB plus a few info requests or meta-context queries.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Minimum, preferred and maximum block sizes advertised.
pub const BLOCK_SIZE_MIN: u32 = 512;
/// Preferred block size.
pub const BLOCK_SIZE_PREFERRED: u32 = 4096;
/// Largest payload accepted (32 MiB).
pub const BLOCK_SIZE_MAX: u32 = 32 << 20;

/// What the handshake negotiated.
#[derive(Debug)]
pub struct Negotiated {
    /// The attachment being served.
    pub export: Arc<Export>,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
    /// Transmission flags sent to the client.
    pub flags: u16,
    /// The export size the client was told: the session's bounds, even after the volume
    /// grows (a client learns a new size by connecting again).
    pub size: u64,
}

/// Why a handshake ended without a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Socket error or the client hung up.
    #[error("Connection lost during handshake")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol; we hung up.
    #[error("Protocol violation during handshake: {0}")]
    Protocol(&'static str),
    /// The client asked for an export that does not exist with `OPT_EXPORT_NAME`.
    #[error("Unknown export requested with NBD_OPT_EXPORT_NAME")]
    UnknownExport,
    /// The client sent `OPT_ABORT`.
    #[error("Client aborted the handshake")]
    Aborted,
    /// The TLS handshake after `OPT_STARTTLS` failed.
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    /// The client tried `OPT_EXPORT_NAME` without TLS while TLS is required.
    #[error("NBD_OPT_EXPORT_NAME without TLS, which this server requires")]
    TlsRequired,
}

/// Transmission flags for `export`.
pub fn transmission_flags(export: &Export, structured: bool) -> u16 {
    let mut f = TF_HAS_FLAGS
        | TF_SEND_FLUSH
        | TF_SEND_FUA
        | TF_SEND_TRIM
        | TF_SEND_WRITE_ZEROES
        | TF_CAN_MULTI_CONN
        | TF_SEND_CACHE
        | TF_SEND_FAST_ZERO;
    if structured {
        f |= TF_SEND_DF;
    }
    if export.rotational {
        f |= TF_ROTATIONAL;
    }
    f
}

struct Conn {
    io: NbdStream,
    out: BytesMut,
}

impl Conn {
    async fn reply(&mut self, opt: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
        put_option_reply(&mut self.out, opt, kind, data);
        self.flush().await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.write_all(&self.out).await?;
        self.out.clear();
        self.io.flush().await
    }
}

/// Runs the handshake on `stream` (a new TCP or Unix connection); returns what was negotiated
/// and the stream to serve it on (upgraded to TLS if the client sent `STARTTLS` over TCP).
/// `shutting_down` makes every option answer `ERR_SHUTDOWN`.
pub async fn negotiate(
    stream: NbdStream,
    exports: &Exports,
    tls: &NbdTls,
    shutting_down: impl Fn() -> bool,
) -> Result<(Negotiated, NbdStream), HandshakeError> {
    let mut c = Conn {
        io: stream,
        out: BytesMut::with_capacity(1024),
    };
    c.out.put_u64(NBDMAGIC);
    c.out.put_u64(IHAVEOPT);
    c.out.put_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    c.flush().await?;

    let client_flags = c.io.read_u32().await?;
    if client_flags & !(C_FIXED_NEWSTYLE | C_NO_ZEROES) != 0 {
        return Err(HandshakeError::Protocol("unknown client flags"));
    }
    let fixed = client_flags & C_FIXED_NEWSTYLE != 0;
    let no_zeroes = client_flags & C_NO_ZEROES != 0;

    let mut structured = false;
    // Export name the meta contexts were selected for, if any.
    let mut meta_for: Option<String> = None;

    loop {
        if c.io.read_u64().await? != IHAVEOPT {
            return Err(HandshakeError::Protocol("bad option magic"));
        }
        let opt = c.io.read_u32().await?;
        let len = c.io.read_u32().await?;
        if !fixed && opt != OPT_EXPORT_NAME {
            // Non-fixed newstyle allows only EXPORT_NAME and has no way to report an error.
            return Err(HandshakeError::Protocol(
                "option other than EXPORT_NAME from a non-fixed-newstyle client",
            ));
        }
        if len > MAX_OPTION_LEN {
            if opt == OPT_EXPORT_NAME {
                return Err(HandshakeError::Protocol("export name too long"));
            }
            // Skip the payload without buffering it, then say why.
            let skipped = tokio::io::copy(
                &mut (&mut c.io).take(u64::from(len)),
                &mut tokio::io::sink(),
            )
            .await?;
            if skipped != u64::from(len) {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if tls.required() && !c.io.is_protected() && opt != OPT_STARTTLS && opt != OPT_ABORT {
                c.reply(opt, REP_ERR_TLS_REQD, b"TLS is required").await?;
            } else {
                c.reply(opt, REP_ERR_TOO_BIG, b"option too large").await?;
            }
            continue;
        }
        let mut data = vec![0u8; len as usize];
        c.io.read_exact(&mut data).await?;

        if shutting_down() && opt != OPT_ABORT {
            if opt == OPT_EXPORT_NAME {
                return Err(HandshakeError::Protocol("server shutting down"));
            }
            c.reply(opt, REP_ERR_SHUTDOWN, b"server is shutting down")
                .await?;
            continue;
        }

        if tls.required() && !c.io.is_protected() {
            match opt {
                OPT_STARTTLS | OPT_ABORT => {}
                // No way to refuse it but hanging up.
                OPT_EXPORT_NAME => return Err(HandshakeError::TlsRequired),
                _ => {
                    c.reply(
                        opt,
                        REP_ERR_TLS_REQD,
                        b"TLS is required: send NBD_OPT_STARTTLS first",
                    )
                    .await?;
                    continue;
                }
            }
        }

        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                let export = exports.get(&name).ok_or(HandshakeError::UnknownExport)?;
                let flags = transmission_flags(&export, structured);
                let size = export.open.volume.size();
                c.out.put_u64(size);
                c.out.put_u16(flags);
                if !no_zeroes {
                    c.out.put_bytes(0, 124);
                }
                c.flush().await?;
                let base_allocation = structured && meta_for.as_deref() == Some(&*name);
                return Ok((
                    Negotiated {
                        export,
                        structured,
                        base_allocation,
                        flags,
                        size,
                    },
                    c.io,
                ));
            }
            OPT_STARTTLS => {
                let Some(acceptor) = tls.acceptor() else {
                    c.reply(opt, REP_ERR_UNSUP, b"TLS is not configured on this server")
                        .await?;
                    continue;
                };
                if c.io.is_tls() {
                    c.reply(opt, REP_ERR_INVALID, b"TLS is already active")
                        .await?;
                    continue;
                }
                if matches!(c.io, NbdStream::Unix(_)) {
                    c.reply(
                        opt,
                        REP_ERR_POLICY,
                        b"TLS is not offered on the Unix socket",
                    )
                    .await?;
                    continue;
                }
                if !data.is_empty() {
                    c.reply(opt, REP_ERR_INVALID, b"NBD_OPT_STARTTLS takes no data")
                        .await?;
                    continue;
                }
                c.reply(opt, REP_ACK, &[]).await?;
                let NbdStream::Plain(sock) = c.io else {
                    return Err(HandshakeError::Protocol("TLS is already active"));
                };
                let tls_stream = acceptor.accept(sock).await.map_err(HandshakeError::Tls)?;
                c.io = NbdStream::Tls(Box::new(tls_stream));
                structured = false;
                meta_for = None;
            }
            OPT_ABORT => {
                // The client may already have hung up; a failed ACK is not an error.
                let _ = c.reply(opt, REP_ACK, &[]).await;
                return Err(HandshakeError::Aborted);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    c.reply(opt, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")
                        .await?;
                } else {
                    // Export names are per-attachment secrets: never listed.
                    c.reply(opt, REP_ACK, &[]).await?;
                }
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    c.reply(
                        opt,
                        REP_ERR_INVALID,
                        b"NBD_OPT_STRUCTURED_REPLY takes no data",
                    )
                    .await?;
                } else {
                    structured = true;
                    c.reply(opt, REP_ACK, &[]).await?;
                }
            }
            OPT_INFO | OPT_GO => {
                let Some((name, _infos)) = parse_info_request(&data) else {
                    c.reply(opt, REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO request")
                        .await?;
                    continue;
                };
                let Some(export) = exports.get(&name) else {
                    c.reply(
                        opt,
                        REP_ERR_UNKNOWN,
                        b"no such export (is the volume attached?)",
                    )
                    .await?;
                    continue;
                };
                let flags = transmission_flags(&export, structured);
                let size = export.open.volume.size();
                let mut info = BytesMut::with_capacity(12);
                info.put_u16(INFO_EXPORT);
                info.put_u64(size);
                info.put_u16(flags);
                put_option_reply(&mut c.out, opt, REP_INFO, &info);
                // Always sent: clients that honour it keep requests aligned and within 32 MiB;
                // requests that break it are answered EINVAL.
                let mut bs = BytesMut::with_capacity(14);
                bs.put_u16(INFO_BLOCK_SIZE);
                bs.put_u32(BLOCK_SIZE_MIN);
                bs.put_u32(BLOCK_SIZE_PREFERRED);
                bs.put_u32(BLOCK_SIZE_MAX);
                put_option_reply(&mut c.out, opt, REP_INFO, &bs);
                c.reply(opt, REP_ACK, &[]).await?;
                if opt == OPT_GO {
                    let base_allocation = structured && meta_for.as_deref() == Some(&*name);
                    return Ok((
                        Negotiated {
                            export,
                            structured,
                            base_allocation,
                            flags,
                            size,
                        },
                        c.io,
                    ));
                }
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                if !structured {
                    c.reply(opt, REP_ERR_INVALID, b"negotiate structured replies first")
                        .await?;
                    continue;
                }
                let Some((name, queries)) = parse_meta_request(&data) else {
                    c.reply(opt, REP_ERR_INVALID, b"malformed meta context request")
                        .await?;
                    continue;
                };
                let list = opt == OPT_LIST_META_CONTEXT;
                if !list && exports.get(&name).is_none() {
                    c.reply(
                        opt,
                        REP_ERR_UNKNOWN,
                        b"no such export (is the volume attached?)",
                    )
                    .await?;
                    continue;
                }
                let selected = queries.is_empty() && list
                    || queries
                        .iter()
                        .any(|q| q == META_BASE_ALLOCATION || (list && q == "base:"));
                if selected {
                    let mut d = BytesMut::with_capacity(4 + META_BASE_ALLOCATION.len());
                    d.put_u32(if list { 0 } else { META_BASE_ALLOCATION_ID });
                    d.put_slice(META_BASE_ALLOCATION.as_bytes());
                    put_option_reply(&mut c.out, opt, REP_META_CONTEXT, &d);
                }
                if !list {
                    meta_for = selected.then_some(name);
                }
                c.reply(opt, REP_ACK, &[]).await?;
            }
            _ => {
                c.reply(opt, REP_ERR_UNSUP, b"option not supported").await?;
            }
        }
    }
}

/// Parses `OPT_INFO`/`OPT_GO` data: name length, name, info count, info types.
fn parse_info_request(d: &[u8]) -> Option<(String, Vec<u16>)> {
    let name_len = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?) as usize;
    let name_end = 4usize.checked_add(name_len)?;
    let name = std::str::from_utf8(d.get(4..name_end)?).ok()?.to_string();
    let n = u16::from_be_bytes(d.get(name_end..name_end + 2)?.try_into().ok()?) as usize;
    let infos = d.get(name_end + 2..)?;
    if infos.len() != n * 2 {
        return None;
    }
    Some((
        name,
        infos
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

/// Parses `OPT_{LIST,SET}_META_CONTEXT` data: export name, query count, queries.
fn parse_meta_request(d: &[u8]) -> Option<(String, Vec<String>)> {
    let name_len = u32::from_be_bytes(d.get(0..4)?.try_into().ok()?) as usize;
    let mut pos = 4usize.checked_add(name_len)?;
    let name = std::str::from_utf8(d.get(4..pos)?).ok()?.to_string();
    let n = u32::from_be_bytes(d.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    let mut queries = Vec::new();
    for _ in 0..n {
        let qlen = u32::from_be_bytes(d.get(pos..pos + 4)?.try_into().ok()?) as usize;
        pos += 4;
        let end = pos.checked_add(qlen)?;
        queries.push(std::str::from_utf8(d.get(pos..end)?).ok()?.to_string());
        pos = end;
    }
    (pos == d.len()).then_some((name, queries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_parsing() {
        let mut d = vec![0, 0, 0, 3];
        d.extend_from_slice(b"abc");
        d.extend_from_slice(&[0, 1, 0, 3]);
        assert_eq!(parse_info_request(&d), Some(("abc".into(), vec![3])));
        assert_eq!(parse_info_request(&d[..d.len() - 1]), None);
        assert_eq!(parse_info_request(&[0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn meta_request_parsing() {
        let mut d = vec![0, 0, 0, 1, b'x', 0, 0, 0, 1, 0, 0, 0, 15];
        d.extend_from_slice(b"base:allocation");
        assert_eq!(
            parse_meta_request(&d),
            Some(("x".into(), vec!["base:allocation".into()]))
        );
        d.push(0);
        assert_eq!(parse_meta_request(&d), None, "trailing bytes");
        assert_eq!(
            parse_meta_request(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            None,
            "huge count"
        );
    }
}
