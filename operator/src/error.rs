//! The operator's errors, each with a CamelCase reason (for conditions,
//! Events and metrics) and one place deciding when to try again.

use std::time::Duration;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed (wraps apply/cleanup errors).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The spec does not validate; the message names the field.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A referenced Secret or key is missing.
    #[error("{field}: secret {name}/{key} {reason}")]
    SecretMissing {
        /// The spec field holding the reference.
        field: &'static str,
        /// Secret name.
        name: String,
        /// Key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting or provisioning failed (the engine's own checks).
    #[error("{0}")]
    Provisioning(#[from] pgkafka_connector::error::Error),
    /// A statement of the operator's own failed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A local file could not be written.
    #[error("{0}")]
    Io(String),
    /// An object could not be serialized.
    #[error("serializing {0}")]
    Serialize(String),
    /// Cleanup waits for the engine to release the slot.
    #[error("the engine still holds slot {0:?}; waiting before dropping it")]
    EngineStillRunning(String),
}

impl Error {
    /// CamelCase reason for conditions, Events and the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => "FinalizerError",
            },
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SecretMissing { .. } => "SecretMissing",
            Error::Provisioning(pgkafka_connector::error::Error::Connect { .. }) => {
                "DatabaseUnreachable"
            }
            Error::Provisioning(_) => "ProvisioningFailed",
            Error::Postgres(_) => "DatabaseError",
            Error::Io(_) | Error::Serialize(_) => "InternalError",
            Error::EngineStillRunning(_) => "WaitingForEngine",
        }
    }

    /// When to reconcile again after this error.
    pub fn requeue_after(&self) -> Duration {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.requeue_after(),
                _ => Duration::from_secs(15),
            },
            // Only a new generation can fix it; the watch brings it.
            Error::InvalidSpec(_) => Duration::from_secs(300),
            Error::EngineStillRunning(_) => Duration::from_secs(5),
            Error::SecretMissing { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_camel_case_and_requeues_fit() {
        let e = Error::SecretMissing {
            field: "spec.postgres.passwordSecretRef",
            name: "db".into(),
            key: "pw".into(),
            reason: "not found".into(),
        };
        assert_eq!(
            (e.reason(), e.requeue_after()),
            ("SecretMissing", Duration::from_secs(30))
        );
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::EngineStillRunning("s".into()),
        )));
        assert_eq!(
            (wrapped.reason(), wrapped.requeue_after()),
            ("WaitingForEngine", Duration::from_secs(5))
        );
        assert_eq!(Error::InvalidSpec("x".into()).reason(), "InvalidSpec");
    }
}
