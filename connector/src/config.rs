//! The engine's configuration: a `PgKafkaConnector` manifest read from a file,
//! validated, with its secret references resolved from a secrets directory
//! (`DIR/<name>/<key>`, the layout of a Secret mounted in a pod).

use std::fmt;
use std::path::{Path, PathBuf};

use pgkafka_crds::{PgKafkaConnector, PgKafkaConnectorSpec, SecretKeyRef};

use crate::error::Error;

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

/// Everything an engine run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `metadata.name` of the resource (the Debezium `source.name`).
    pub name: String,
    /// The validated spec.
    pub spec: PgKafkaConnectorSpec,
    /// The PostgreSQL role.
    pub user: String,
    /// Its password (empty for trust or certificate authentication).
    pub password: Secret,
    /// PEM CA bundle file for verify-ca / verify-full.
    pub ca_file: Option<PathBuf>,
    /// Kafka SASL username and password, from `spec.kafka.saslSecretRef`.
    pub kafka_sasl: Option<(String, Secret)>,
    /// Kafka CA bundle file, from `spec.kafka.caSecretRef`.
    pub kafka_ca_file: Option<PathBuf>,
}

impl EngineConfig {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path, secrets_dir)
    }

    /// Parses and validates a manifest; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &Path, secrets_dir: Option<&Path>) -> Result<Self, Error> {
        let resource: PgKafkaConnector =
            serde_yaml::from_str(text).map_err(|e| Error::ParseConfig {
                path: origin.to_owned(),
                message: e.to_string(),
            })?;
        let name = resource
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::ParseConfig {
                path: origin.to_owned(),
                message: "metadata.name is required".into(),
            })?;
        let spec = resource.spec;
        spec.validate()?;
        let pg = &spec.postgres;
        let read = |field: &'static str, r: &SecretKeyRef| read_secret(secrets_dir, field, r);
        let user = match (&pg.user, &pg.user_secret_ref) {
            (Some(user), _) => user.clone(),
            (None, Some(r)) => read("spec.postgres.userSecretRef", r)?.0,
            (None, None) => unreachable_by_validation("spec.postgres.user")?,
        };
        let password = match &pg.password_secret_ref {
            Some(r) => read("spec.postgres.passwordSecretRef", r)?,
            None => Secret::default(),
        };
        let ca_file = match &pg.ca_secret_ref {
            Some(r) => Some(secret_path(secrets_dir, "spec.postgres.caSecretRef", r)?),
            None => None,
        };
        let kafka_sasl = match &spec.kafka.sasl_secret_ref {
            Some(r) => {
                let jaas = read("spec.kafka.saslSecretRef", r)?;
                Some(parse_jaas(jaas.expose()).ok_or_else(|| Error::Secret {
                    field: "spec.kafka.saslSecretRef",
                    name: r.name.clone(),
                    key: r.key.clone(),
                    reason:
                        "expected a JAAS line with username=\"...\" and password=\"...\"".into(),
                })?)
            }
            None => None,
        };
        let kafka_ca_file = match &spec.kafka.ca_secret_ref {
            Some(r) => Some(secret_path(secrets_dir, "spec.kafka.caSecretRef", r)?),
            None => None,
        };
        Ok(EngineConfig {
            name,
            spec,
            user,
            password,
            ca_file,
            kafka_sasl,
            kafka_ca_file,
        })
    }
}

/// `username="u"` and `password="p"` out of a JAAS line.
pub fn parse_jaas(line: &str) -> Option<(String, Secret)> {
    let value = |key: &str| -> Option<String> {
        let start = line.find(&format!("{key}=\""))? + key.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    Some((value("username")?, Secret(value("password")?)))
}

fn unreachable_by_validation<T>(field: &'static str) -> Result<T, Error> {
    Err(Error::Setup {
        field: field.into(),
        message: "missing (validation should have caught this)".into(),
    })
}

fn secret_path(
    dir: Option<&Path>,
    field: &'static str,
    r: &SecretKeyRef,
) -> Result<PathBuf, Error> {
    let err = |reason: String| Error::Secret {
        field,
        name: r.name.clone(),
        key: r.key.clone(),
        reason,
    };
    let dir = dir.ok_or_else(|| {
        err("the spec references a secret; pass --secrets-dir DIR holding DIR/<name>/<key>".into())
    })?;
    let path = dir.join(&r.name).join(&r.key);
    if path.is_file() {
        Ok(path)
    } else {
        Err(err(format!("{} does not exist", path.display())))
    }
}

fn read_secret(dir: Option<&Path>, field: &'static str, r: &SecretKeyRef) -> Result<Secret, Error> {
    let path = secret_path(dir, field, r)?;
    let value = std::fs::read_to_string(&path).map_err(|e| Error::Secret {
        field,
        name: r.name.clone(),
        key: r.key.clone(),
        reason: format!("{}: {e}", path.display()),
    })?;
    // Secrets written with `echo` or kubectl --from-file end with a newline
    // that is not part of the value.
    Ok(Secret(value.trim_end_matches(['\n', '\r']).to_owned()))
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
        assert_eq!(c.password.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn jaas_lines_give_username_and_password() {
        let (user, password) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="cdc" password="p w";"#,
        )
        .expect("parses");
        assert_eq!((user.as_str(), password.expose()), ("cdc", "p w"));
        assert!(parse_jaas("username=cdc").is_none());
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
