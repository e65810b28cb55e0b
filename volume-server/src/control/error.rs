//! API errors: the code clients match on, and the one table that says how each protocol reports
//! each code (gRPC status, HTTP status on the AWS endpoint, NBD errno on the data path).

use crate::nbd::wire::{EINVAL, EIO, ENOSPC, ENOTSUP, EPERM, ESHUTDOWN};

/// Declares [`ErrorCode`] and its table: one row per code.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $grpc:ident, $http:literal, $errno:expr; )*) => {
        /// Every error code the server answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients see it (`InvalidVolume.NotFound`).
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The gRPC status code.
            pub fn grpc(self) -> tonic::Code {
                match self { $(ErrorCode::$variant => tonic::Code::$grpc,)* }
            }

            /// The HTTP status on the AWS endpoint: 4xx for a client's fault, 5xx for ours
            /// (the SDKs retry 5xx).
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $http,)* }
            }

            /// The NBD errno when a block request fails so (the NBD session may narrow it by
            /// command where the spec asks, e.g. `ENOSPC` for a write past the end).
            pub fn nbd_errno(self) -> u32 {
                match self { $(ErrorCode::$variant => $errno,)* }
            }
        }
    };
}

error_codes! {
    // Control plane: EC2 codes.
    /// AllocateAddress past the quota of Elastic IPs.
    AddressLimitExceeded = "AddressLimitExceeded", ResourceExhausted, 400, EINVAL;
    AttachmentLimitExceeded = "AttachmentLimitExceeded", ResourceExhausted, 400, EINVAL;
    ConcurrentSnapshotLimitExceeded = "ConcurrentSnapshotLimitExceeded", ResourceExhausted, 400, EINVAL;
    /// A VPC or subnet still has what depends on it.
    DependencyViolation = "DependencyViolation", FailedPrecondition, 400, EINVAL;
    FastSnapshotRestoreLimitExceeded = "FastSnapshotRestoreLimitExceeded", ResourceExhausted, 400, EINVAL;
    IdempotentParameterMismatch = "IdempotentParameterMismatch", AlreadyExists, 400, EINVAL;
    IncorrectInstanceState = "IncorrectInstanceState", FailedPrecondition, 400, EINVAL;
    IncorrectModificationState = "IncorrectModificationState", InvalidArgument, 400, EINVAL;
    /// Also the data path's answer to I/O on an attachment that was fenced (detached).
    IncorrectState = "IncorrectState", FailedPrecondition, 400, ESHUTDOWN;
    InstanceLimitExceeded = "InstanceLimitExceeded", InvalidArgument, 400, EINVAL;
    /// Out of disk: a server-side condition in EC2 (5xx), `ENOSPC` on NBD.
    InsufficientVolumeCapacity = "InsufficientVolumeCapacity", ResourceExhausted, 500, ENOSPC;
    /// The Elastic IP pool has no free address (a capacity condition: 5xx, as EC2's).
    InsufficientAddressCapacity = "InsufficientAddressCapacity", ResourceExhausted, 500, EINVAL;
    InsufficientFreeAddressesInSubnet = "InsufficientFreeAddressesInSubnet", ResourceExhausted, 400, EINVAL;
    InternalError = "InternalError", Internal, 500, EIO;
    InvalidAddressNotFound = "InvalidAddress.NotFound", NotFound, 400, EINVAL;
    InvalidAllocationIdNotFound = "InvalidAllocationID.NotFound", NotFound, 400, EINVAL;
    InvalidReservedInstancesOfferingId = "InvalidReservedInstancesOfferingId", NotFound, 400, EINVAL;
    InvalidReservedInstancesId = "InvalidReservedInstancesId", NotFound, 400, EINVAL;
    ReservedInstancesLimitExceeded = "ReservedInstancesLimitExceeded", ResourceExhausted, 400, EINVAL;
    InvalidAssociationIdNotFound = "InvalidAssociationID.NotFound", NotFound, 400, EINVAL;
    InvalidAmiIdMalformed = "InvalidAMIID.Malformed", InvalidArgument, 400, EINVAL;
    InvalidAmiIdNotFound = "InvalidAMIID.NotFound", NotFound, 400, EINVAL;
    InvalidAmiIdUnavailable = "InvalidAMIID.Unavailable", InvalidArgument, 400, EINVAL;
    InvalidAmiNameDuplicate = "InvalidAMIName.Duplicate", InvalidArgument, 400, EINVAL;
    InvalidAmiNameMalformed = "InvalidAMIName.Malformed", InvalidArgument, 400, EINVAL;
    InvalidAttachmentNotFound = "InvalidAttachment.NotFound", NotFound, 400, EINVAL;
    InvalidBlockDeviceMapping = "InvalidBlockDeviceMapping", InvalidArgument, 400, EINVAL;
    InvalidDeviceInUse = "InvalidDevice.InUse", FailedPrecondition, 400, EINVAL;
    InvalidGroupNotFound = "InvalidGroup.NotFound", NotFound, 400, EINVAL;
    InvalidId = "InvalidID", InvalidArgument, 400, EINVAL;
    InvalidInstanceAttributeValue = "InvalidInstanceAttributeValue", InvalidArgument, 400, EINVAL;
    InvalidInstanceIdMalformed = "InvalidInstanceID.Malformed", InvalidArgument, 400, EINVAL;
    InvalidInstanceIdNotFound = "InvalidInstanceID.NotFound", NotFound, 400, EINVAL;
    InvalidInstanceIdUnavailable = "InvalidInstanceID.Unavailable", InvalidArgument, 400, EINVAL;
    InvalidInstanceType = "InvalidInstanceType", InvalidArgument, 400, EINVAL;
    /// ReleaseAddress of an associated address.
    InvalidIpAddressInUse = "InvalidIPAddress.InUse", FailedPrecondition, 400, EINVAL;
    /// ImportKeyPair's material is not a public key EC2 takes.
    InvalidKeyFormat = "InvalidKey.Format", InvalidArgument, 400, EINVAL;
    InvalidKeyPairDuplicate = "InvalidKeyPair.Duplicate", AlreadyExists, 400, EINVAL;
    InvalidKeyPairNotFound = "InvalidKeyPair.NotFound", NotFound, 400, EINVAL;
    /// An encrypted volume or snapshot whose KMS key is disabled or pending deletion (EC2's
    /// state-reason code for such a launch, answered at once here).
    InvalidKmsKeyInvalidState = "InvalidKMSKey.InvalidState", FailedPrecondition, 400, EINVAL;
    InvalidNetworkInterfaceIdNotFound = "InvalidNetworkInterfaceID.NotFound", NotFound, 400, EINVAL;
    InvalidPaginationToken = "InvalidPaginationToken", InvalidArgument, 400, EINVAL;
    InvalidParameterCombination = "InvalidParameterCombination", InvalidArgument, 400, EINVAL;
    InvalidParameterValue = "InvalidParameterValue", InvalidArgument, 400, EINVAL;
    InvalidSubnetConflict = "InvalidSubnet.Conflict", InvalidArgument, 400, EINVAL;
    InvalidSubnetIdNotFound = "InvalidSubnetID.NotFound", NotFound, 400, EINVAL;
    InvalidSubnetRange = "InvalidSubnet.Range", InvalidArgument, 400, EINVAL;
    InvalidSnapshotIdMalformed = "InvalidSnapshotID.Malformed", InvalidArgument, 400, EINVAL;
    InvalidSnapshotInUse = "InvalidSnapshot.InUse", FailedPrecondition, 400, EINVAL;
    InvalidSnapshotNotFound = "InvalidSnapshot.NotFound", NotFound, 400, EINVAL;
    InvalidVpcIdNotFound = "InvalidVpcID.NotFound", NotFound, 400, EINVAL;
    InvalidVpcRange = "InvalidVpc.Range", InvalidArgument, 400, EINVAL;
    InvalidVolumeIdMalformed = "InvalidVolumeID.Malformed", InvalidArgument, 400, EINVAL;
    InvalidVolumeModificationNotFound = "InvalidVolumeModification.NotFound", NotFound, 400, EINVAL;
    InvalidVolumeNotFound = "InvalidVolume.NotFound", NotFound, 400, EINVAL;
    InvalidVolumeZoneMismatch = "InvalidVolume.ZoneMismatch", FailedPrecondition, 400, EINVAL;
    MissingParameter = "MissingParameter", InvalidArgument, 400, EINVAL;
    OperationNotPermitted = "OperationNotPermitted", InvalidArgument, 400, EINVAL;
    /// A reservation refuses the call or the I/O (NVMe reservation conflict).
    /// AssociateAddress of an associated address without `AllowReassociation`.
    ResourceAlreadyAssociated = "Resource.AlreadyAssociated", FailedPrecondition, 400, EINVAL;
    ReservationConflict = "ReservationConflict", PermissionDenied, 400, EPERM;
    SnapshotCreationPerVolumeRateExceeded = "SnapshotCreationPerVolumeRateExceeded", ResourceExhausted, 400, EINVAL;
    TagLimitExceeded = "TagLimitExceeded", ResourceExhausted, 400, EINVAL;
    UnknownVolumeType = "UnknownVolumeType", InvalidArgument, 400, EINVAL;
    UnsupportedHibernationConfiguration = "UnsupportedHibernationConfiguration", InvalidArgument, 400, EINVAL;
    UnsupportedOperation = "UnsupportedOperation", Unimplemented, 400, ENOTSUP;
    VolumeInUse = "VolumeInUse", FailedPrecondition, 400, EINVAL;
    VolumeLimitExceeded = "VolumeLimitExceeded", ResourceExhausted, 400, EINVAL;
    VolumeModificationRateExceeded = "VolumeModificationRateExceeded", InvalidArgument, 400, EINVAL;
    VpcLimitExceeded = "VpcLimitExceeded", ResourceExhausted, 400, EINVAL;
    // The AWS endpoint: requests, signatures, accounts.
    /// Unknown key, wrong signature (EC2's answer to both), or a scope for another region.
    AuthFailure = "AuthFailure", Unauthenticated, 401, EPERM;
    /// The request had `DryRun=true` and would have been carried out.
    DryRunOperation = "DryRunOperation", FailedPrecondition, 412, EINVAL;
    /// An Authorization header that cannot be read.
    IncompleteSignature = "IncompleteSignature", Unauthenticated, 400, EPERM;
    InvalidAction = "InvalidAction", Unimplemented, 400, ENOTSUP;
    /// STS's answer to an unknown key.
    InvalidClientTokenId = "InvalidClientTokenId", Unauthenticated, 403, EPERM;
    MissingAction = "MissingAction", InvalidArgument, 400, EINVAL;
    /// A signature more than 15 minutes from the server's time.
    RequestExpired = "RequestExpired", Unauthenticated, 400, EPERM;
    /// A request body that did not arrive in time.
    RequestTimeout = "RequestTimeout", DeadlineExceeded, 408, EIO;
    /// A body past the endpoint's limit.
    RequestEntityTooLarge = "RequestEntityTooLarge", InvalidArgument, 413, EINVAL;
    /// A signed `x-amz-content-sha256` that is not the body's hash.
    XAmzContentSha256Mismatch = "XAmzContentSHA256Mismatch", Unauthenticated, 400, EPERM;
    /// STS's answer to a wrong signature.
    SignatureDoesNotMatch = "SignatureDoesNotMatch", Unauthenticated, 403, EPERM;
    // EBS direct APIs (their HTTP statuses are the model's).
    ConflictException = "ConflictException", FailedPrecondition, 409, EINVAL;
    /// The JSON services' answer to a wrong or expired signature.
    InvalidSignatureException = "InvalidSignatureException", Unauthenticated, 403, EPERM;
    /// The JSON services' answer to an unknown key.
    UnrecognizedClientException = "UnrecognizedClientException", Unauthenticated, 403, EPERM;
    /// No operation at this method and path.
    UnknownOperationException = "UnknownOperationException", Unimplemented, 404, ENOTSUP;
    InternalServerException = "InternalServerException", Internal, 500, EIO;
    ResourceNotFoundException = "ResourceNotFoundException", NotFound, 404, EINVAL;
    ServiceQuotaExceededException = "ServiceQuotaExceededException", ResourceExhausted, 402, EINVAL;
    ValidationException = "ValidationException", InvalidArgument, 400, EINVAL;
    // KMS (its JSON protocol: every client fault is 400).
    AlreadyExistsException = "AlreadyExistsException", AlreadyExists, 400, EINVAL;
    DisabledException = "DisabledException", FailedPrecondition, 400, EINVAL;
    InvalidAliasNameException = "InvalidAliasNameException", InvalidArgument, 400, EINVAL;
    InvalidArnException = "InvalidArnException", InvalidArgument, 400, EINVAL;
    InvalidMarkerException = "InvalidMarkerException", InvalidArgument, 400, EINVAL;
    KmsInvalidStateException = "KMSInvalidStateException", FailedPrecondition, 400, EINVAL;
    NotFoundException = "NotFoundException", NotFound, 400, EINVAL;
    UnsupportedOperationException = "UnsupportedOperationException", Unimplemented, 400, ENOTSUP;
    // Data path.
    /// A block request past the end of the volume: EC2's `InvalidParameterValue`, reported
    /// as gRPC `OUT_OF_RANGE` so a client can tell it from other bad values.
    BlockOutOfRange = "InvalidParameterValue", OutOfRange, 400, EINVAL;
    /// The server is shutting down.
    ServiceUnavailable = "ServiceUnavailable", Unavailable, 503, ESHUTDOWN;
}

impl ErrorCode {
    /// The code named `name` (the first of the table with that name).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    /// What clients match on, e.g. [`ErrorCode::VolumeInUse`].
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl Ec2Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Ec2Error {
        Ec2Error {
            code,
            message: message.into(),
        }
    }

    /// `InvalidParameterValue`.
    pub fn invalid_value(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new(ErrorCode::InvalidParameterValue, message)
    }

    /// `InvalidParameterCombination`.
    pub fn invalid_combination(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new(ErrorCode::InvalidParameterCombination, message)
    }

    /// `MissingParameter` for `name`.
    pub fn missing(name: &str) -> Ec2Error {
        Ec2Error::new(
            ErrorCode::MissingParameter,
            format!("The request must contain the parameter {name}"),
        )
    }

    /// `InternalError`: something failed on our side.
    pub fn internal(message: impl Into<String>) -> Ec2Error {
        Ec2Error::new(ErrorCode::InternalError, message)
    }

    /// The gRPC status code for this error's code.
    pub fn grpc_code(&self) -> tonic::Code {
        self.code.grpc()
    }

    /// Converts to a gRPC status carrying the code in [`proto::EC2_ERROR_CODE_KEY`].
    pub fn into_status(self) -> tonic::Status {
        let mut status = tonic::Status::new(self.code.grpc(), self.message);
        if let Ok(v) = self.code.as_str().parse() {
            status.metadata_mut().insert(proto::EC2_ERROR_CODE_KEY, v);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn the_table_is_sound() {
        for c in ErrorCode::ALL {
            // Client faults are 4xx: the SDKs retry 5xx.
            let server_side = matches!(
                c,
                ErrorCode::InternalError
                    | ErrorCode::InternalServerException
                    | ErrorCode::InsufficientVolumeCapacity
                    | ErrorCode::InsufficientAddressCapacity
                    | ErrorCode::ServiceUnavailable
            );
            assert_eq!(c.http_status() >= 500, server_side, "{c}");
            assert!((400..600).contains(&c.http_status()), "{c}");
            // Only the data path's variant shares its name.
            if *c != ErrorCode::BlockOutOfRange {
                assert_eq!(ErrorCode::from_name(c.as_str()), Some(*c), "{c}");
            }
            if c.as_str().ends_with(".NotFound") {
                assert_eq!(c.grpc(), tonic::Code::NotFound, "{c}");
            }
        }
    }
}
