//! EC2 API errors: an error code clients match on, a message for humans, and a gRPC status.

/// An error as the EC2 API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    /// EC2 error code, e.g. `VolumeInUse`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl Ec2Error {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Ec2Error {
        Ec2Error {
            code,
            message: message.into(),
        }
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new("InvalidParameterValue", message)
    }

    /// `InvalidParameterCombination`.
    pub fn invalid_combination(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new("InvalidParameterCombination", message)
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Ec2Error {
        Ec2Error::new(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InternalError`: something failed on our side.
    pub fn internal(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new("InternalError", message)
    }

    /// The gRPC status code for this error's EC2 code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.code {
            c if c.ends_with(".NotFound") => tonic::Code::NotFound,
            "VolumeInUse"
            | "IncorrectState"
            | "IncorrectInstanceState"
            | "InvalidVolume.ZoneMismatch"
            | "InvalidDevice.InUse"
            | "InvalidSnapshot.InUse" => tonic::Code::FailedPrecondition,
            "AttachmentLimitExceeded"
            | "TagLimitExceeded"
            | "VolumeLimitExceeded"
            | "ConcurrentSnapshotLimitExceeded"
            | "SnapshotCreationPerVolumeRateExceeded" => tonic::Code::ResourceExhausted,
            "IdempotentParameterMismatch" => tonic::Code::AlreadyExists,
            "ResourceNotFoundException" => tonic::Code::NotFound,
            "ConflictException" => tonic::Code::FailedPrecondition,
            "ServiceQuotaExceededException" | "FastSnapshotRestoreLimitExceeded" => {
                tonic::Code::ResourceExhausted
            }
            "InternalServerException" => tonic::Code::Internal,
            "ReservationConflict" => tonic::Code::FailedPrecondition,
            "UnsupportedOperation" => tonic::Code::Unimplemented,
            "InternalError" => tonic::Code::Internal,
            _ => tonic::Code::InvalidArgument,
        }
    }

    /// Converts to a gRPC status carrying the EC2 code in [`proto::EC2_ERROR_CODE_KEY`].
    pub fn into_status(self) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), self.message);
        if let Ok(v) = self.code.parse() {
            status.metadata_mut().insert(proto::EC2_ERROR_CODE_KEY, v);
        }
        status
    }
}
