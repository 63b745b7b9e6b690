//! How failed AWS SDK calls map onto [`bluegreen_core::Error`]: [`aws_error`] classifies an
//! [`SdkError`] as retryable or permanent, names the IAM action when access is denied, and
//! turns a missing resource into [`Error::NotFound`]. Every AWS backend of bluegreen maps its
//! errors through it (this crate's, and `bluegreen-dns`'s Route53 router), so they read alike.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bluegreen_core::Error;

/// A failed call of any AWS SDK client (each client's `SdkError` is this type).
pub type SdkError<E> = aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>;

/// A failed AWS call, classified.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    /// The service answered with an error code.
    #[error("{action} on {resource}: {code} (HTTP {status}): {message}")]
    Service { action: &'static str, resource: String, code: String, message: String, status: u16 },
    /// The request did not get an answer (timeout, connection refused or dropped, bad response).
    #[error("{action} on {resource}: {detail}")]
    Transport { action: &'static str, resource: String, detail: String, retryable: bool },
    /// The request was never sent: the SDK's credential chain found no credentials.
    #[error(
        "{action} on {resource}: no AWS credentials ({detail}): set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, name a profile (AWS_PROFILE, or `profile` in [backend.aws]), or run \
         with an instance or task role"
    )]
    Credentials { action: &'static str, resource: String, detail: String },
}

/// Error codes worth repeating the call for (throttling, capacity, transient server trouble).
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    // Route53: another change to the same zone is still being applied.
    "PriorRequestNotComplete",
];

/// Error codes saying the caller's identity may not do this.
const DENIED_CODES: &[&str] =
    &["AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException"];

impl AwsError {
    /// Classifies an SDK error of the call `action` (`dynamodb:PutItem`) on `resource`.
    pub(crate) fn from_sdk<E>(action: &'static str, resource: &str, err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.to_owned();
        // The credential chain's failure, found once (the service answered: not a credential matter).
        let credentials = match &err {
            SdkError::ServiceError(_) => None,
            other => credentials_failure(other).map(chain),
        };
        if let Some(detail) = credentials {
            return Self::Credentials { action, resource, detail };
        }
        match &err {
            SdkError::ServiceError(service) => Self::Service {
                action,
                resource,
                code: service.err().code().unwrap_or("Unknown").to_owned(),
                // An answer the SDK could not read has no code and no message: say why.
                message: match (service.err().code(), service.err().message()) {
                    (_, Some(message)) => message.to_owned(),
                    (None, None) => DisplayErrorContext(service.err()).to_string(),
                    (Some(_), None) => String::new(),
                },
                status: service.raw().status().as_u16(),
            },
            SdkError::ConstructionFailure(_) => {
                Self::Transport { action, resource, detail: DisplayErrorContext(&err).to_string(), retryable: false }
            }
            _ => Self::Transport { action, resource, detail: DisplayErrorContext(&err).to_string(), retryable: true },
        }
    }

    /// The service's error code, if the service answered.
    #[cfg_attr(
        not(any(feature = "alb", feature = "dynamodb")),
        allow(dead_code, reason = "used by the ALB and DynamoDB backends")
    )]
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            Self::Transport { .. } | Self::Credentials { .. } => None,
        }
    }

    /// Whether the conditional write was refused because its condition did not hold.
    #[cfg_attr(not(feature = "dynamodb"), allow(dead_code, reason = "used by the DynamoDB store"))]
    pub(crate) fn is_condition_failed(&self) -> bool {
        matches!(self.code(), Some("ConditionalCheckFailedException" | "TransactionCanceledException"))
    }

    /// Whether repeating the same call later may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Service { code, status, .. } => retryable(code, *status),
            Self::Transport { retryable, .. } => *retryable,
            // Credentials do not appear by waiting: the operator has to provide them.
            Self::Credentials { .. } => false,
        }
    }
}

/// The credential chain's failure among `err`'s sources, if the call failed for want of
/// credentials (the SDK reports it as a dispatch failure, with a kilobyte of debug output).
fn credentials_failure<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(credentials) = e.downcast_ref::<CredentialsError>() {
            return Some(credentials);
        }
        next = e.source();
    }
    None
}

/// `err` and its sources' messages, `: `-separated (no debug output), at most three.
fn chain(err: &CredentialsError) -> String {
    let mut messages = vec![err.to_string()];
    let mut next = std::error::Error::source(err);
    while let Some(e) = next.filter(|_| messages.len() < 3) {
        messages.push(e.to_string());
        next = e.source();
    }
    messages.join(": ")
}

/// Maps the SDK error `err` of the call `action` (the IAM action: `route53:GetChange`,
/// `dynamodb:PutItem`) on `resource` (what the message names: `hosted zone Z1`, `table t`)
/// onto [`bluegreen_core::Error`]:
///
/// - a service error saying the thing called on does not exist (ELB's `…NotFound`, ECS's
///   `…NotFoundException`, Route53's `NoSuchHostedZone` / `NoSuchChange`): [`Error::NotFound`]
///   naming `resource`;
/// - throttling, capacity and server errors (`Throttling`, `PriorRequestNotComplete`, HTTP 429,
///   5xx), timeouts and dropped connections: a retryable [`Error::Backend`];
/// - access denied or expired credentials: a permanent [`Error::Backend`] that names `action`;
/// - no credentials at all (the SDK's chain found none, so nothing was sent): a permanent
///   [`Error::Backend`] in one sentence saying where credentials come from;
/// - anything else (validation errors, a request that cannot be built): a permanent
///   [`Error::Backend`] with the service's code and message.
///
/// ```
/// use aws_sdk_dynamodb::error::SdkError;
/// use aws_sdk_dynamodb::operation::get_item::GetItemError;
/// let timeout: SdkError<GetItemError> = SdkError::timeout_error("no answer within 30 s");
/// let err = bluegreen_aws::error::aws_error("dynamodb:GetItem", "table deploys", timeout);
/// assert!(err.is_retryable());
/// assert!(err.to_string().contains("dynamodb:GetItem on table deploys"), "{err}");
/// ```
pub fn aws_error<E>(action: &'static str, resource: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    AwsError::from_sdk(action, resource, err).into()
}

/// Whether error `code` of the call `action` says the thing called on does not exist.
///
/// ELB names what is missing in the code (`TargetGroupNotFound`, `ListenerNotFound`), ECS too
/// (`ClusterNotFoundException`, `ServiceNotFoundException`, and `ResourceNotFoundException`),
/// Route53 says `NoSuchHostedZone` / `NoSuchChange`. Another service's
/// `ResourceNotFoundException` (DynamoDB's missing table) is a set-up error, not this.
fn is_not_found(action: &str, code: &str) -> bool {
    let service = action.split_once(':').map_or("", |(service, _)| service);
    let named = code.ends_with("NotFoundException") && (code != "ResourceNotFoundException" || service == "ecs");
    let route53 = service == "route53" && matches!(code, "NoSuchHostedZone" | "NoSuchChange");
    code.ends_with("NotFound") || named || route53
}

/// Whether a service error with this code and HTTP status is worth retrying.
pub(crate) fn retryable(code: &str, status: u16) -> bool {
    if DENIED_CODES.contains(&code) {
        return false;
    }
    RETRYABLE_CODES.contains(&code) || status == 429 || status >= 500
}

impl From<AwsError> for Error {
    fn from(err: AwsError) -> Self {
        if let AwsError::Service { action, code, resource, .. } = &err {
            if is_not_found(action, code) {
                return Error::not_found(format!("{resource} ({err})"));
            }
        }
        let retryable = err.is_retryable();
        let message = match &err {
            AwsError::Service { action, code, resource, .. } if DENIED_CODES.contains(&code.as_str()) => {
                format!("access denied: the caller may not call {action} on {resource} ({err})")
            }
            AwsError::Service { code, resource, .. } if code == "ResourceNotFoundException" => {
                format!("{resource} does not exist ({err})")
            }
            _ => err.to_string(),
        };
        Error::Backend { backend: "aws".to_owned(), message, retryable, source: Some(Box::new(err)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> AwsError {
        AwsError::Service {
            action: "dynamodb:PutItem",
            resource: "table t".into(),
            code: code.into(),
            message: "m".into(),
            status,
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for (code, status) in [
            ("ThrottlingException", 400),
            ("ProvisionedThroughputExceededException", 400),
            ("RequestLimitExceeded", 400),
            ("InternalServerError", 500),
            ("ServiceUnavailable", 503),
            ("SomethingNew", 502),
            ("SlowDown", 429),
        ] {
            let err: Error = service(code, status).into();
            assert!(err.is_retryable(), "{code} / {status} should be retryable: {err}");
        }
    }

    #[test]
    fn access_denied_is_permanent_and_names_the_action() {
        let err: Error = service("AccessDeniedException", 400).into();
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains("access denied") && text.contains("dynamodb:PutItem"), "{text}");
    }

    #[test]
    fn validation_errors_are_permanent() {
        let err: Error = service("ValidationException", 400).into();
        assert!(!err.is_retryable(), "{err}");
        let err: Error = service("ResourceNotFoundException", 400).into();
        assert!(!err.is_retryable() && err.to_string().contains("table t does not exist"), "{err}");
    }

    #[test]
    fn missing_elb_resources_are_not_found() {
        let err: Error = service("TargetGroupNotFound", 400).into();
        assert!(matches!(&err, Error::NotFound { what } if what.contains("table t")), "{err}");
        let err: Error = service("ClusterNotFoundException", 400).into();
        assert!(matches!(&err, Error::NotFound { .. }), "{err}");
    }

    #[test]
    fn transport_errors_follow_their_flag() {
        let err = AwsError::Transport { action: "a", resource: "r".into(), detail: "timeout".into(), retryable: true };
        assert!(Error::from(err).is_retryable());
    }
}
