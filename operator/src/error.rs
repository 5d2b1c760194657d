//! The operator's errors, each with a CamelCase reason (for conditions,
//! Events and metrics) and one place deciding when to try again.

use std::time::Duration;

use pgkafka_crds::conditions::Reason;
use pgkafka_postgres::credentials::SecretError;
use pgkafka_postgres::PgError;

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
    InvalidSpec(#[from] pgkafka_crds::ValidationErrors),
    /// A referenced Secret or key is missing or unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Connecting, provisioning, reading or dropping in PostgreSQL failed.
    #[error(transparent)]
    Database(#[from] PgError),
    /// An object could not be serialized.
    #[error("serializing {what}: {source}")]
    Serialize {
        /// What.
        what: &'static str,
        /// Why.
        source: serde_yaml::Error,
    },
    /// Cleanup waits for the engine to release the slot.
    #[error("the engine still holds slot {0:?}; waiting before dropping it")]
    EngineStillRunning(String),
}

impl Error {
    /// CamelCase reason for conditions, Events and the failures metric.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Kube(_) => Reason::KubernetesApiError,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => Reason::FinalizerError,
            },
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::Secret(_) => Reason::SecretMissing,
            Error::Database(PgError::Connect { .. }) => Reason::DatabaseUnreachable,
            Error::Database(PgError::SlotLost { .. }) => Reason::SlotLost,
            Error::Database(PgError::Setup { .. } | PgError::Tls { .. }) => {
                Reason::ProvisioningFailed
            }
            Error::Database(PgError::Query { .. }) => Reason::DatabaseError,
            Error::Serialize { .. } => Reason::InternalError,
            Error::EngineStillRunning(_) => Reason::WaitingForEngine,
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
            Error::Secret(_) => Duration::from_secs(30),
            _ => Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_camel_case_and_requeues_fit() {
        let e = Error::Secret(SecretError::new(
            "spec.postgres.passwordSecretRef",
            &pgkafka_crds::SecretKeyRef {
                name: "db".into(),
                key: "pw".into(),
            },
            pgkafka_postgres::credentials::SecretProblem::Missing("not found".into()),
        ));
        assert_eq!(
            (e.reason(), e.requeue_after()),
            (Reason::SecretMissing, Duration::from_secs(30))
        );
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::EngineStillRunning("s".into()),
        )));
        assert_eq!(
            (wrapped.reason(), wrapped.requeue_after()),
            (Reason::WaitingForEngine, Duration::from_secs(5))
        );
        let invalid = pgkafka_crds::ValidationErrors(Vec::new());
        assert_eq!(Error::InvalidSpec(invalid).reason(), Reason::InvalidSpec);
    }
}
