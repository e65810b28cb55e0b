//! Everything that makes ebsctl fail, the message it prints and its exit code (as the AWS CLI's).

use std::fmt;

use tonic::{Code, Status};

use crate::args::ArgError;

/// Exit code of a usage or parameter error.
pub const EXIT_USAGE: u8 = 252;
/// Exit code of an error returned by the service.
pub const EXIT_SERVICE: u8 = 254;
/// Exit code of every other failure: connection, waiter, output.
pub const EXIT_OTHER: u8 = 255;

/// A failed ebsctl run.
#[derive(Debug)]
pub enum CliError {
    /// A structured argument could not be read.
    Arg(ArgError),
    /// The server answered the call with an error.
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// `--endpoint` is not an `http://` URL.
    InvalidEndpoint { endpoint: String, reason: String },
    /// Nothing answered at the endpoint.
    Connect { endpoint: String },
    /// The connection failed some other way during a call.
    Transport {
        endpoint: String,
        operation: &'static str,
        message: String,
    },
    /// A waiter reached a failure state, an unexpected error, or its attempt limit.
    Waiter { name: &'static str, reason: String },
    /// The reply could not be written out.
    Output(String),
}

impl CliError {
    /// Maps a failed call: the EC2 error code rides in the `x-ec2-error-code` metadata; a status the
    /// client made up itself (it has a source error) is a connection problem.
    pub fn from_status(operation: &'static str, endpoint: &str, status: &Status) -> Self {
        let ec2_code = status
            .metadata()
            .get(proto::EC2_ERROR_CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let local = std::error::Error::source(status).is_some();
        match ec2_code {
            Some(code) => Self::Service {
                operation,
                code,
                message: status.message().to_owned(),
            },
            None if local && status.code() == Code::Unavailable => Self::Connect {
                endpoint: endpoint.to_owned(),
            },
            None if local => Self::Transport {
                endpoint: endpoint.to_owned(),
                operation,
                message: status.message().to_owned(),
            },
            None => Self::Service {
                operation,
                code: code_name(status.code()).to_owned(),
                message: status.message().to_owned(),
            },
        }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Arg(_) => EXIT_USAGE,
            Self::Service { .. } => EXIT_SERVICE,
            Self::InvalidEndpoint { .. }
            | Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Waiter { .. }
            | Self::Output(_) => EXIT_OTHER,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arg(e) => write!(f, "{e}"),
            Self::Service {
                operation,
                code,
                message,
            } => write!(
                f,
                "An error occurred ({code}) when calling the {operation} operation: {message}"
            ),
            Self::InvalidEndpoint { endpoint, reason } => {
                write!(f, "Invalid endpoint {endpoint}: {reason}")
            }
            Self::Connect { endpoint } => {
                write!(f, "Could not connect to the endpoint URL: \"{endpoint}\"")
            }
            Self::Transport {
                endpoint,
                operation,
                message,
            } => write!(
                f,
                "Connection to the endpoint URL \"{endpoint}\" failed while calling the {operation} operation: {message}"
            ),
            Self::Waiter { name, reason } => write!(f, "Waiter {name} failed: {reason}"),
            Self::Output(message) => write!(f, "Could not write the output: {message}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<ArgError> for CliError {
    fn from(e: ArgError) -> Self {
        Self::Arg(e)
    }
}

/// The gRPC status code's name, used as the error code when the server sent no EC2 code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    #[test]
    fn service_errors_carry_the_ec2_code() {
        let mut status = Status::failed_precondition("vol-1 is attached to i-1");
        status.metadata_mut().insert(
            proto::EC2_ERROR_CODE_KEY,
            MetadataValue::from_static("VolumeInUse"),
        );
        let e = CliError::from_status("DeleteVolume", "http://h:1", &status);
        assert_eq!(
            e.to_string(),
            "An error occurred (VolumeInUse) when calling the DeleteVolume operation: vol-1 is attached to i-1"
        );
        assert_eq!(e.exit_code(), 254);
    }

    #[test]
    fn without_an_ec2_code_the_grpc_code_names_the_error() {
        let e = CliError::from_status("AttachVolume", "http://h:1", &Status::not_found("gone"));
        assert_eq!(
            e.to_string(),
            "An error occurred (NotFound) when calling the AttachVolume operation: gone"
        );
        assert_eq!(e.exit_code(), 254);
    }

    #[test]
    fn a_server_sent_unavailable_is_a_service_error() {
        let e = CliError::from_status("AttachVolume", "http://h:1", &Status::unavailable("busy"));
        assert_eq!(e.exit_code(), 254);
    }

    /// An error wrapping a status, as tonic's transport errors do.
    #[derive(Debug)]
    struct Wrapped(Status);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "transport error")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn local_connection_failures_exit_255() {
        let status =
            Status::from_error(Box::new(Wrapped(Status::unavailable("tcp connect error"))));
        assert!(std::error::Error::source(&status).is_some());
        let e = CliError::from_status("DescribeVolumes", "http://127.0.0.1:1", &status);
        assert_eq!(
            e.to_string(),
            "Could not connect to the endpoint URL: \"http://127.0.0.1:1\""
        );
        assert_eq!(e.exit_code(), 255);

        let status = Status::from_error(Box::new(Wrapped(Status::internal("h2 protocol error"))));
        let e = CliError::from_status("DescribeVolumes", "http://127.0.0.1:1", &status);
        assert_eq!(e.exit_code(), 255);
        assert!(e.to_string().contains("h2 protocol error"), "{e}");
    }
}
