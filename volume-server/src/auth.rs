//! gRPC authentication: one shared bearer token (`--grpc-token-file`).
//!
//! Every call to the API and to server reflection must carry `authorization: Bearer <token>`;
//! `grpc.health.v1` stays open so that load balancers and orchestrators can probe the server
//! without a secret. A call without the header or with another token fails `UNAUTHENTICATED`
//! with the EC2 code `AuthFailure`.
//!
//! # Design
//! The presented token and the expected one are both hashed with SHA-256 and the digests
//! compared with [`subtle::ConstantTimeEq`]: the comparison takes the same time wherever the
//! first differing byte is, and hashing first also hides the expected token's length. Only the
//! digest of the token is kept in memory after start-up.
//!
//! # Limitations
//! The token travels in clear text unless the network is trusted (the gRPC listener has no TLS);
//! there is one token for every caller, and no per-call authorization.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// The metadata key the token rides in.
pub const AUTHORIZATION: &str = "authorization";
/// The EC2 error code of a refused call.
pub const AUTH_FAILURE: &str = "AuthFailure";
/// Tokens shorter than this are accepted with a warning.
const WEAK_TOKEN_LEN: usize = 16;

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("Cannot read the gRPC token file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file holds no token.
    #[error("The gRPC token file {0} is empty")]
    Empty(PathBuf),
    /// The token has characters a header cannot carry.
    #[error(
        "The gRPC token in {0} must be printable ASCII without spaces (it travels in an HTTP header)"
    )]
    Invalid(PathBuf),
}

/// Reads the token from `path`: the whole file, minus a trailing newline.
pub fn read_token_file(path: &Path) -> Result<String, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|e| AuthError::Read(path.to_owned(), e))?;
    let token = raw
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&raw);
    if token.is_empty() {
        return Err(AuthError::Empty(path.to_owned()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Invalid(path.to_owned()));
    }
    if token.len() < WEAK_TOKEN_LEN {
        tracing::warn!(path = %path.display(), len = token.len(), "the gRPC token is short; use at least {WEAK_TOKEN_LEN} random characters");
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the gRPC token file is readable by other users; chmod 600 it");
        }
    }
    Ok(token.to_owned())
}

/// The interceptor in front of authenticated services. Without a token it lets every call
/// through (loopback only, or `--grpc-insecure`).
#[derive(Clone, Default)]
pub struct BearerAuth {
    /// SHA-256 of the expected token; `None`: authentication is off.
    expected: Option<Arc<[u8; 32]>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("enabled", &self.expected.is_some())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl BearerAuth {
    /// Requires `token` on every call.
    pub fn new(token: &str) -> BearerAuth {
        BearerAuth {
            expected: Some(Arc::new(digest(token.as_bytes()))),
        }
    }

    /// Lets every call through.
    pub fn disabled() -> BearerAuth {
        BearerAuth::default()
    }

    /// Whether calls must carry the token.
    pub fn enabled(&self) -> bool {
        self.expected.is_some()
    }

    /// Checks an `authorization` header value.
    pub fn check(&self, header: Option<&MetadataValue<Ascii>>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let Some(value) = header else {
            return Err(auth_failure(
                "The request carries no authorization header (Bearer token).",
            ));
        };
        let value = value.as_bytes();
        // RFC 7235: the scheme is case-insensitive.
        let presented = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
            _ => {
                return Err(auth_failure(
                    "The authorization header must be 'Bearer <token>'.",
                ));
            }
        };
        if bool::from(digest(presented).ct_eq(&expected[..])) {
            Ok(())
        } else {
            Err(auth_failure("The bearer token is not valid."))
        }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    /// Authenticates the call; then a dry run (`x-ec2-dry-run: true`) ends here with
    /// `DryRunOperation`: the caller may make the call (there are no per-call permissions
    /// beyond the token), and nothing is done.
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match self.check(req.metadata().get(AUTHORIZATION)) {
            Ok(())
                if req
                    .metadata()
                    .get(proto::DRY_RUN_KEY)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true")) =>
            {
                Err(crate::control::Ec2Error::new(
                    crate::control::ErrorCode::DryRunOperation,
                    "Request would have succeeded, but DryRun flag is set.",
                )
                .into_status())
            }
            Ok(()) => Ok(req),
            Err(status) => {
                tracing::info!(peer = ?req.remote_addr(), reason = status.message(), "gRPC call refused");
                Err(status)
            }
        }
    }
}

/// `UNAUTHENTICATED` with the EC2 code `AuthFailure`.
fn auth_failure(message: &str) -> Status {
    let mut status = Status::unauthenticated(message);
    status.metadata_mut().insert(
        proto::EC2_ERROR_CODE_KEY,
        MetadataValue::from_static(AUTH_FAILURE),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(s: &str) -> MetadataValue<Ascii> {
        s.parse().unwrap()
    }

    #[test]
    fn checks_the_bearer_token() {
        let auth = BearerAuth::new("s3cret-token-0123456789");
        assert!(
            auth.check(Some(&header("Bearer s3cret-token-0123456789")))
                .is_ok()
        );
        assert!(
            auth.check(Some(&header("bearer s3cret-token-0123456789")))
                .is_ok()
        );
        for bad in [
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-01234567890",
            "Bearer ",
            "Basic s3cret-token-0123456789",
            "s3cret-token-0123456789",
        ] {
            let status = auth.check(Some(&header(bad))).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad}");
            assert_eq!(
                status.metadata().get(proto::EC2_ERROR_CODE_KEY).unwrap(),
                AUTH_FAILURE
            );
        }
        assert!(auth.check(None).is_err());
        assert!(BearerAuth::disabled().check(None).is_ok());
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn token_file_is_trimmed_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "abc-DEF_123\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "abc-DEF_123");
        std::fs::write(&p, "abc\r\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "abc");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(read_token_file(&p), Err(AuthError::Empty(_))));
        std::fs::write(&p, "two words\n").unwrap();
        assert!(matches!(read_token_file(&p), Err(AuthError::Invalid(_))));
        assert!(matches!(
            read_token_file(&dir.path().join("missing")),
            Err(AuthError::Read(..))
        ));
    }
}
