//! Masked, hashed and truncated columns (a target's `columnMasks`,
//! Debezium's `column.mask.with.N.chars`, `column.mask.hash.v2.*` and
//! `column.truncate.to.N.chars`), compiled per table shape into one
//! operation per column position. The encoder applies them while writing
//! a row image (changes and snapshot rows, `before` and `after`), and to
//! the record key only where an entry says `applyToKey`. Filters run on
//! the real values before any of this.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use md5::Md5;
use pgkafka_crds::{ColumnMaskSpec, HashAlgorithm, MaskOperation, SecretKeyRef};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::filter::FilterError;
use crate::decode::types::oid;
use crate::event::TableShape;

/// The salts of hashed columns, read from their Secrets at start-up, by
/// Secret name and key.
#[derive(Clone, Default)]
pub struct Salts(HashMap<(String, String), Arc<[u8]>>);

impl fmt::Debug for Salts {
    // Salts never print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salts({} kept)", self.0.len())
    }
}

impl Salts {
    /// Adds the salt held by `r`.
    pub(crate) fn insert(&mut self, r: &SecretKeyRef, salt: &str) {
        self.0
            .insert((r.name.clone(), r.key.clone()), Arc::from(salt.as_bytes()));
    }

    fn get(&self, r: &SecretKeyRef) -> Option<&Arc<[u8]>> {
        self.0.get(&(r.name.clone(), r.key.clone()))
    }
}

/// What one column's values become.
#[derive(Clone)]
pub(crate) enum ColumnMask {
    /// Every value, NULL included, is this many asterisks.
    Chars(Arc<str>),
    /// The salted digest in hexadecimal, cut to the column's length.
    Hash {
        algorithm: HashAlgorithm,
        salt: Arc<[u8]>,
        length: Option<usize>,
    },
    /// Values cut to this many characters.
    Truncate(usize),
}

impl fmt::Debug for ColumnMask {
    // The salt never prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnMask::Chars(s) => write!(f, "Chars({})", s.len()),
            ColumnMask::Hash {
                algorithm, length, ..
            } => write!(f, "Hash({algorithm:?}, {length:?})"),
            ColumnMask::Truncate(n) => write!(f, "Truncate({n})"),
        }
    }
}

impl ColumnMask {
    /// What a value becomes.
    pub fn text<'a>(&'a self, value: &'a str) -> Cow<'a, str> {
        match self {
            ColumnMask::Chars(stars) => Cow::Borrowed(stars),
            ColumnMask::Hash {
                algorithm,
                salt,
                length,
            } => {
                let mut hex = hex_digest(*algorithm, salt, value.as_bytes());
                if let Some(n) = length {
                    hex.truncate(*n);
                }
                Cow::Owned(hex)
            }
            ColumnMask::Truncate(n) => match value.char_indices().nth(*n) {
                Some((at, _)) => Cow::Borrowed(&value[..at]),
                None => Cow::Borrowed(value),
            },
        }
    }

    /// What NULL becomes: Debezium's mask replaces it too; a hash or a cut
    /// has nothing to work on.
    pub fn null(&self) -> Option<&str> {
        match self {
            ColumnMask::Chars(stars) => Some(stars),
            ColumnMask::Hash { .. } | ColumnMask::Truncate(_) => None,
        }
    }

    /// The schema form's parameters, as Debezium's column mappers set them.
    pub fn schema_parameter(&self) -> (&'static str, String) {
        match self {
            ColumnMask::Chars(_) | ColumnMask::Hash { .. } => ("masked", "true".to_owned()),
            ColumnMask::Truncate(n) => ("truncateLength", n.to_string()),
        }
    }
}

/// Lower-case hexadecimal of the digest of `salt` followed by `value`
/// (Debezium's `HashingByteArrayStrategy.V2`).
fn hex_digest(algorithm: HashAlgorithm, salt: &[u8], value: &[u8]) -> String {
    fn hex<D: Digest>(salt: &[u8], value: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut d = D::new();
        d.update(salt);
        d.update(value);
        let bytes = d.finalize();
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes.iter() {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }
    match algorithm {
        HashAlgorithm::Md5 => hex::<Md5>(salt, value),
        HashAlgorithm::Sha1 => hex::<Sha1>(salt, value),
        HashAlgorithm::Sha256 => hex::<Sha256>(salt, value),
        HashAlgorithm::Sha384 => hex::<Sha384>(salt, value),
        HashAlgorithm::Sha512 => hex::<Sha512>(salt, value),
    }
}

/// A target's masks for one table shape, by column position.
#[derive(Debug, Default)]
pub(crate) struct CompiledMasks {
    /// Per column: what its values become in row images.
    pub values: Vec<Option<ColumnMask>>,
    /// Per column: what it becomes in the record key; `None` when no entry
    /// says `applyToKey`.
    pub key: Option<Vec<Option<ColumnMask>>>,
}

/// Character types (after domains): the only ones a mask applies to.
fn is_character(value_oid: u32) -> bool {
    matches!(
        value_oid,
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::CHAR
    )
}

/// The declared length of `varchar(n)` and `char(n)`.
fn declared_length(value_oid: u32, type_modifier: i32) -> Option<usize> {
    match value_oid {
        oid::VARCHAR | oid::BPCHAR if type_modifier > 4 => usize::try_from(type_modifier - 4).ok(),
        _ => None,
    }
}

/// Compiles `specs` (at `path`, the target's `columnMasks`) for `shape`:
/// every named column must exist and be a character column.
pub(crate) fn compile(
    specs: &[ColumnMaskSpec],
    salts: &Salts,
    shape: &TableShape,
    path: &str,
) -> Result<Option<CompiledMasks>, FilterError> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut masks = CompiledMasks {
        values: vec![None; shape.columns.len()],
        key: None,
    };
    for (k, spec) in specs.iter().enumerate() {
        let here = format!("{path}[{k}]");
        let Some(operation) = spec.operation() else {
            return Err(FilterError {
                path: here,
                message: "give exactly one of maskWithChars, hash and truncateToChars".into(),
            });
        };
        for (c, name) in spec.columns.iter().enumerate() {
            let at = format!("{here}.columns[{c}]");
            let Some(i) = shape.columns.iter().position(|col| &col.name == name) else {
                let all: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
                return Err(FilterError {
                    path: at,
                    message: format!(
                        "{} has no column {name:?} (columns: {})",
                        shape.table,
                        all.join(", ")
                    ),
                });
            };
            let column = &shape.columns[i];
            if !is_character(column.value_oid) {
                return Err(FilterError {
                    path: at,
                    message: format!(
                        "{}.{name} is of type OID {}, not a character type (text, varchar, char, name): \
                         a mask, hash or cut applies only to text",
                        shape.table, column.type_oid
                    ),
                });
            }
            let mask = column_mask(operation, salts, &here, column)?;
            if spec.apply_to_key {
                masks
                    .key
                    .get_or_insert_with(|| vec![None; shape.columns.len()])[i] = Some(mask.clone());
            }
            masks.values[i] = Some(mask);
        }
    }
    Ok(Some(masks))
}

fn column_mask(
    operation: MaskOperation<'_>,
    salts: &Salts,
    here: &str,
    column: &crate::event::Column,
) -> Result<ColumnMask, FilterError> {
    let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(match operation {
        MaskOperation::Chars(n) => ColumnMask::Chars(Arc::from("*".repeat(count(n)))),
        MaskOperation::Truncate(n) => ColumnMask::Truncate(count(n)),
        MaskOperation::Hash(h) => {
            let salt = salts.get(&h.salt_secret_ref).ok_or_else(|| FilterError {
                path: format!("{here}.hash.saltSecretRef"),
                message: format!(
                    "the salt {}/{} was not read at start-up",
                    h.salt_secret_ref.name, h.salt_secret_ref.key
                ),
            })?;
            ColumnMask::Hash {
                algorithm: h.algorithm,
                salt: Arc::clone(salt),
                length: declared_length(column.value_oid, column.type_modifier),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;
    use pgkafka_crds::QualifiedTable;

    fn column(name: &str, value_oid: u32, type_modifier: i32) -> Column {
        Column {
            is_key: false,
            name: name.into(),
            type_oid: value_oid,
            value_oid,
            type_modifier,
        }
    }

    fn shape() -> TableShape {
        TableShape {
            table: QualifiedTable {
                schema: "public".into(),
                name: "people".into(),
            },
            columns: vec![
                column("id", 20, -1),
                column("email", oid::TEXT, -1),
                column("code", oid::VARCHAR, 8 + 4),
            ],
            replica_identity: b'd',
        }
    }

    fn specs(yaml: &str) -> Vec<ColumnMaskSpec> {
        serde_yaml::from_str(yaml).expect("parses")
    }

    fn salts() -> Salts {
        let mut s = Salts::default();
        s.insert(
            &SecretKeyRef {
                name: "pii".into(),
                key: "salt".into(),
            },
            "CzQMA0cB5K",
        );
        s
    }

    #[test]
    fn hash_is_the_hex_digest_of_salt_then_value_cut_to_the_column() {
        // Python's hashlib.sha256(b"CzQMA0cB5K" + b"ada@example.com").
        let all = "ce8cb7a11e8d5886f46e9aa5f5094b9253c8a1dfc31cc454a67ed83f1919560b";
        let m = compile(
            &specs("[{columns: [email, code], hash: {algorithm: SHA-256, saltSecretRef: {name: pii, key: salt}}}]"),
            &salts(),
            &shape(),
            "t.columnMasks",
        )
        .expect("compiles")
        .expect("some");
        let email = m.values[1].as_ref().expect("email");
        assert_eq!(email.text("ada@example.com"), all);
        let code = m.values[2].as_ref().expect("code");
        assert_eq!(code.text("ada@example.com"), all[..8]);
        assert_eq!(email.null(), None);
        assert!(m.key.is_none());
    }

    #[test]
    fn chars_replace_everything_and_truncation_counts_characters() {
        let m = compile(
            &specs("[{columns: [email], maskWithChars: 3, applyToKey: true}, {columns: [code], truncateToChars: 2}]"),
            &Salts::default(),
            &shape(),
            "t",
        )
        .expect("compiles")
        .expect("some");
        let stars = m.values[1].as_ref().expect("email");
        assert_eq!(
            (stars.text("anything"), stars.null()),
            ("***".into(), Some("***"))
        );
        let cut = m.values[2].as_ref().expect("code");
        assert_eq!(cut.text("żółw"), "żó");
        assert_eq!(cut.text("a"), "a");
        assert!(m
            .key
            .as_ref()
            .is_some_and(|k| k[1].is_some() && k[2].is_none()));
    }

    #[test]
    fn unknown_and_non_character_columns_are_refused_by_name() {
        let err = compile(
            &specs("[{columns: [nope], maskWithChars: 3}]"),
            &Salts::default(),
            &shape(),
            "t.columnMasks",
        )
        .expect_err("unknown");
        assert_eq!(err.path, "t.columnMasks[0].columns[0]");
        assert!(
            err.message.contains("has no column \"nope\""),
            "{}",
            err.message
        );
        let err = compile(
            &specs("[{columns: [email, id], truncateToChars: 3}]"),
            &Salts::default(),
            &shape(),
            "t.columnMasks",
        )
        .expect_err("bigint");
        assert_eq!(err.path, "t.columnMasks[0].columns[1]");
        assert!(
            err.message.contains("not a character type"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_salt_never_prints() {
        let m = ColumnMask::Hash {
            algorithm: HashAlgorithm::Md5,
            salt: Arc::from(&b"CzQMA0cB5K"[..]),
            length: None,
        };
        assert!(!format!("{m:?} {:?}", salts()).contains("CzQMA0cB5K"));
    }
}
