//! Errors of the SQL side of PostgreSQL (connect, catalog, provisioning,
//! slot state), shared by the engine and the operator. Each keeps the
//! driver's error as its source and shows the server's own message.

/// A PostgreSQL operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL at {target} (spec.postgres): {detail}")]
    Connect {
        /// `host:port/database as user`.
        target: String,
        /// The server's message when it sent one, else the driver's.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A catalog query or provisioning statement failed.
    #[error("PostgreSQL: {context}: {detail}")]
    Query {
        /// What was being done.
        context: String,
        /// The server's message when it sent one, else the driver's.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server or the objects it holds do not allow streaming as configured.
    #[error("{field}: {message}")]
    Setup {
        /// The spec field the problem relates to.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The slot is gone, invalidated or ahead of what this connector
    /// delivered: streaming would skip changes, so nothing starts until
    /// `spec.slot.onLoss` says what to do.
    #[error("spec.slot.name: {message}")]
    SlotLost {
        /// The slot.
        slot: String,
        /// What happened, the last delivered position and the choices.
        message: String,
    },
    /// The TLS configuration cannot be built (a bad CA bundle, say).
    #[error("spec.postgres.caSecretRef: {context}: {source}")]
    Tls {
        /// What was being read or built.
        context: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl PgError {
    /// A failed connection attempt to `target`.
    pub(crate) fn connect(target: String, source: tokio_postgres::Error) -> Self {
        PgError::Connect {
            target,
            detail: postgres_detail(&source),
            source,
        }
    }

    /// A failed statement while doing `context`.
    pub fn query(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PgError::Query {
            context: context.into(),
            detail: postgres_detail(&source),
            source,
        }
    }

    /// A closure turning a driver error into [`PgError::Query`] for `context`.
    pub fn during(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        let context = context.into();
        move |source| PgError::query(context, source)
    }
}

/// The most useful text of a driver error: the server's message (with its
/// detail and hint) when there is one, else the error and its causes.
pub fn postgres_detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            text.push_str("; ");
            text.push_str(extra);
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
