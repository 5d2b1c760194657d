//! Credentials from secret references: the one resolver the engine (files in
//! a secrets directory) and the operator (Kubernetes Secrets) share. The
//! caller says how one reference is read; what the spec references, which
//! field each fills and how a value is parsed is decided here.

use std::fmt;

use pgkafka_crds::{KafkaSpec, PostgresSpec, SecretKeyRef};

/// A secret string that never prints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What is wrong with one secret reference.
#[derive(Debug, thiserror::Error)]
pub enum SecretProblem {
    /// The secret or its key cannot be found where the reader looked.
    #[error("{0}")]
    Missing(String),
    /// It exists but cannot be read.
    #[error("cannot be read")]
    Io(#[source] std::io::Error),
    /// Its value is not what the field needs.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A secret reference that could not be resolved; names the spec field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: cannot read secret {name}/{key}: {problem}")]
pub struct SecretError {
    /// The spec field holding the reference.
    pub field: String,
    /// Secret name.
    pub name: String,
    /// Key in the secret.
    pub key: String,
    /// What is wrong.
    #[source]
    pub problem: SecretProblem,
}

impl SecretError {
    /// The error for `r`, referenced from `field`.
    pub fn new(field: impl Into<String>, r: &SecretKeyRef, problem: SecretProblem) -> Self {
        SecretError {
            field: field.into(),
            name: r.name.clone(),
            key: r.key.clone(),
            problem,
        }
    }
}

/// What logs in to PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct PgCredentials {
    /// The role.
    pub user: String,
    /// Its password (empty for trust or certificate authentication).
    pub password: Secret,
    /// The CA bundle (PEM) for verify-ca / verify-full.
    pub ca_pem: Option<String>,
}

/// What logs in to Kafka.
#[derive(Debug, Clone, Default)]
pub struct KafkaCredentials {
    /// SASL username and password, from `spec.kafka.saslSecretRef`.
    pub sasl: Option<(String, Secret)>,
    /// The broker CA bundle (PEM), from `spec.kafka.caSecretRef`.
    pub ca_pem: Option<String>,
}

/// Every secret reference of the PostgreSQL spec, with its field.
pub fn postgres_refs(pg: &PostgresSpec) -> Vec<(&'static str, &SecretKeyRef)> {
    [
        ("spec.postgres.userSecretRef", pg.user_secret_ref.as_ref()),
        (
            "spec.postgres.passwordSecretRef",
            pg.password_secret_ref.as_ref(),
        ),
        ("spec.postgres.caSecretRef", pg.ca_secret_ref.as_ref()),
    ]
    .into_iter()
    .filter_map(|(field, r)| r.map(|r| (field, r)))
    .collect()
}

/// Every secret reference of the Kafka spec, with its field.
pub fn kafka_refs(kafka: &KafkaSpec) -> Vec<(&'static str, &SecretKeyRef)> {
    [
        ("spec.kafka.saslSecretRef", kafka.sasl_secret_ref.as_ref()),
        ("spec.kafka.caSecretRef", kafka.ca_secret_ref.as_ref()),
    ]
    .into_iter()
    .filter_map(|(field, r)| r.map(|r| (field, r)))
    .collect()
}

/// Resolves the PostgreSQL credentials; `read` returns one referenced value.
/// A spec with neither `user` nor `userSecretRef` fails validation first.
pub fn resolve_postgres(
    pg: &PostgresSpec,
    mut read: impl FnMut(&'static str, &SecretKeyRef) -> Result<String, SecretError>,
) -> Result<PgCredentials, SecretError> {
    let mut creds = PgCredentials {
        user: pg.user.clone().unwrap_or_default(),
        ..PgCredentials::default()
    };
    for (field, r) in postgres_refs(pg) {
        let value = read(field, r)?;
        match field {
            "spec.postgres.userSecretRef" if pg.user.is_none() => creds.user = value,
            "spec.postgres.passwordSecretRef" => creds.password = Secret(value),
            "spec.postgres.caSecretRef" => creds.ca_pem = Some(value),
            _ => {}
        }
    }
    Ok(creds)
}

/// Resolves the Kafka credentials; `read` returns one referenced value.
pub fn resolve_kafka(
    kafka: &KafkaSpec,
    mut read: impl FnMut(&'static str, &SecretKeyRef) -> Result<String, SecretError>,
) -> Result<KafkaCredentials, SecretError> {
    let mut creds = KafkaCredentials::default();
    for (field, r) in kafka_refs(kafka) {
        let value = read(field, r)?;
        if field == "spec.kafka.saslSecretRef" {
            let sasl = parse_jaas(&value).ok_or_else(|| {
                SecretError::new(
                    field,
                    r,
                    SecretProblem::Invalid(
                        "expected a JAAS line with username=\"...\" and password=\"...\"",
                    ),
                )
            })?;
            creds.sasl = Some(sasl);
        } else {
            creds.ca_pem = Some(value);
        }
    }
    Ok(creds)
}

/// A secret value as stored: files written with `echo` or
/// `kubectl --from-file` end with a newline that is not part of the value.
pub fn trim_value(value: &str) -> String {
    value.trim_end_matches(['\n', '\r']).to_owned()
}

/// `username="u"` and `password="p"` out of a JAAS line.
fn parse_jaas(line: &str) -> Option<(String, Secret)> {
    let value = |key: &str| -> Option<String> {
        let start = line.find(&format!("{key}=\""))? + key.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    Some((value("username")?, Secret(value("password")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(yaml: &str) -> PostgresSpec {
        serde_yaml::from_str(yaml).expect("postgres spec")
    }

    #[test]
    fn each_reference_fills_its_field_and_secrets_never_print() {
        let spec = pg("{host: h, database: d, userSecretRef: {name: u, key: user}, passwordSecretRef: {name: p, key: pw}, caSecretRef: {name: c, key: ca.crt}}");
        let mut asked = Vec::new();
        let creds = resolve_postgres(&spec, |field, r| {
            asked.push(field);
            Ok(format!("{}/{}", r.name, r.key))
        })
        .expect("resolves");
        assert_eq!(creds.user, "u/user");
        assert_eq!(creds.password.expose(), "p/pw");
        assert_eq!(creds.ca_pem.as_deref(), Some("c/ca.crt"));
        assert_eq!(
            asked,
            [
                "spec.postgres.userSecretRef",
                "spec.postgres.passwordSecretRef",
                "spec.postgres.caSecretRef"
            ]
        );
        assert!(!format!("{creds:?}").contains("p/pw"));
    }

    #[test]
    fn an_unreadable_reference_names_its_field() {
        let spec =
            pg("{host: h, database: d, user: cdc, passwordSecretRef: {name: db, key: password}}");
        let err = resolve_postgres(&spec, |field, r| {
            Err(SecretError::new(
                field,
                r,
                SecretProblem::Missing("not found".into()),
            ))
        })
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "spec.postgres.passwordSecretRef: cannot read secret db/password: not found"
        );
    }

    #[test]
    fn jaas_lines_give_username_and_password() {
        let (user, password) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="cdc" password="p w";"#,
        )
        .expect("parses");
        assert_eq!((user.as_str(), password.expose()), ("cdc", "p w"));
        assert!(parse_jaas("username=cdc").is_none());
        let kafka: KafkaSpec = serde_yaml::from_str(
            "{bootstrapServers: [k:1], topicPrefix: x, saslSecretRef: {name: s, key: jaas}}",
        )
        .expect("kafka spec");
        let err =
            resolve_kafka(&kafka, |_, _| Ok("username=cdc".into())).expect_err("not a JAAS line");
        assert!(err.to_string().starts_with("spec.kafka.saslSecretRef: "));
    }
}
