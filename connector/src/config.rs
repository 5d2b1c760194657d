//! The engine's configuration: a `PgKafkaConnector` manifest read from a file,
//! validated, with its secret references resolved from a secrets directory
//! (`DIR/<name>/<key>`, the layout of a Secret mounted in a pod).

use std::path::{Path, PathBuf};

use pgkafka_crds::{PgKafkaConnector, PgKafkaConnectorSpec, SecretKeyRef};

use crate::credentials::{
    resolve_kafka, resolve_postgres, trim_value, KafkaCredentials, PgCredentials, SecretError,
    SecretProblem,
};
use crate::error::{Error, ErrorKind};
use crate::transform::mask::Salts;

/// Everything an engine run needs, resolved and validated.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// `metadata.name` of the resource (the Debezium `source.name`).
    pub name: String,
    /// The validated spec.
    pub spec: PgKafkaConnectorSpec,
    /// Who logs in to PostgreSQL.
    pub postgres: PgCredentials,
    /// Who logs in to Kafka.
    pub kafka: KafkaCredentials,
    /// The PostgreSQL CA bundle as a file, for the replication connection
    /// (its carrier reads a path); written once at start when only PEM is known.
    pub pg_ca_file: Option<PathBuf>,
    /// The salts of hashed columns (`columnMasks[].hash.saltSecretRef`).
    pub salts: Salts,
}

impl EngineConfig {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| ErrorKind::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path, secrets_dir)
    }

    /// Parses and validates a manifest; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &Path, secrets_dir: Option<&Path>) -> Result<Self, Error> {
        let resource: PgKafkaConnector =
            serde_yaml::from_str(text).map_err(|source| ErrorKind::ParseConfig {
                path: origin.to_owned(),
                source,
            })?;
        let name = resource
            .metadata
            .name
            .clone()
            .ok_or_else(|| ErrorKind::Missing {
                origin: origin.display().to_string(),
                field: "metadata.name",
            })?;
        let spec = resource.spec;
        spec.validate()?;
        let read = |field: &'static str, r: &SecretKeyRef| read_secret(secrets_dir, field, r);
        let postgres = resolve_postgres(&spec.postgres, read)?;
        let kafka = resolve_kafka(&spec.kafka, read)?;
        let pg_ca_file = match &spec.postgres.ca_secret_ref {
            Some(r) => Some(secret_path(secrets_dir, "spec.postgres.caSecretRef", r)?),
            None => None,
        };
        let mut salts = Salts::default();
        for (field, r) in spec.salt_refs() {
            salts.insert(r, &read_secret(secrets_dir, &field, r)?);
        }
        Ok(EngineConfig {
            name,
            spec,
            postgres,
            kafka,
            pg_ca_file,
            salts,
        })
    }
}

fn secret_path(dir: Option<&Path>, field: &str, r: &SecretKeyRef) -> Result<PathBuf, SecretError> {
    let missing = |reason: String| SecretError::new(field, r, SecretProblem::Missing(reason));
    let dir = dir.ok_or_else(|| {
        missing(
            "the spec references a secret; pass --secrets-dir DIR holding DIR/<name>/<key>".into(),
        )
    })?;
    let path = dir.join(&r.name).join(&r.key);
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(format!("{} does not exist", path.display())))
    }
}

fn read_secret(dir: Option<&Path>, field: &str, r: &SecretKeyRef) -> Result<String, SecretError> {
    let path = secret_path(dir, field, r)?;
    let value = std::fs::read_to_string(&path)
        .map_err(|e| SecretError::new(field, r, SecretProblem::Io(e)))?;
    Ok(trim_value(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: pgkafka.io/v1alpha1
kind: PgKafkaConnector
metadata: {name: orders}
spec:
  postgres: {host: db, database: shop, user: cdc, passwordSecretRef: {name: db, key: password}}
  publication: {name: p}
  slot: {name: s}
  kafka: {bootstrapServers: ["k:9092"], topicPrefix: cdc}
  listeners: [{table: orders}]
"#;

    #[test]
    fn secret_comes_from_the_secrets_dir_and_never_prints() {
        let dir = std::env::temp_dir().join(format!("pgkafka-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("db")).expect("mkdir");
        std::fs::write(dir.join("db/password"), "s3cret\n").expect("write");
        let c = EngineConfig::from_yaml(MANIFEST, Path::new("m.yaml"), Some(&dir)).expect("valid");
        assert_eq!(c.postgres.password.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn missing_secrets_dir_names_the_field() {
        let err = EngineConfig::from_yaml(MANIFEST, Path::new("m.yaml"), None).expect_err("no dir");
        let msg = err.to_string();
        assert!(
            msg.starts_with("spec.postgres.passwordSecretRef: cannot read secret db/password"),
            "{msg}"
        );
        assert!(msg.contains("--secrets-dir"), "{msg}");
    }

    #[test]
    fn parse_errors_name_the_file_and_field() {
        let bad = MANIFEST.replace("slot: {name: s}", "slot: {name: s, creat: true}");
        let msg = EngineConfig::from_yaml(&bad, Path::new("m.yaml"), None)
            .expect_err("bad")
            .to_string();
        assert!(
            msg.starts_with("m.yaml: ") && msg.contains("unknown field `creat`"),
            "{msg}"
        );
    }
}
