//! Masked, hashed and truncated columns of a target (Debezium's
//! `column.mask.with.N.chars`, `column.mask.hash.v2.<algorithm>.with.salt.<salt>`
//! and `column.truncate.to.N.chars`), applied to every record the target
//! receives: changes and snapshot rows, `before` and `after`. Filters see
//! the real values; the record key only when an entry says `applyToKey`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::SecretKeyRef;

/// One operation on some columns of a target's records.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ColumnMaskSpec {
    /// Column names of the listener's table (character columns: `text`,
    /// `varchar`, `char`, `name`, or a domain over one of them).
    #[schemars(length(min = 1))]
    pub columns: Vec<String>,
    /// Replace every value, NULL included, with this many `*`
    /// (`column.mask.with.N.chars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub mask_with_chars: Option<i32>,
    /// Replace each value with a salted hash in hexadecimal, the same
    /// pseudonym Debezium's hashing strategy v2 gives
    /// (`column.mask.hash.v2.<algorithm>.with.salt.<salt>`): the digest of
    /// the salt's bytes followed by the value's UTF-8 bytes, cut to the
    /// column's declared length (`varchar(n)`, `char(n)`). NULL stays NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashSpec>,
    /// Cut values longer than this many characters (Unicode scalar values)
    /// (`column.truncate.to.N.chars`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub truncate_to_chars: Option<i32>,
    /// Also apply it to the record key when a column is a key column
    /// (keys are otherwise sent as they are, as Debezium does).
    #[serde(default, skip_serializing_if = "is_false")]
    pub apply_to_key: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A salted hash.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashSpec {
    /// The digest, by its Java name.
    pub algorithm: HashAlgorithm,
    /// Secret key holding the salt (never inline in the resource); its
    /// UTF-8 bytes are used as stored, but for a trailing newline, as with
    /// every secret.
    pub salt_secret_ref: SecretKeyRef,
}

/// Digests, by their Java Cryptography Architecture names.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum HashAlgorithm {
    /// MD5 (128 bits; for compatibility only).
    #[serde(rename = "MD5")]
    Md5,
    /// SHA-1 (160 bits; for compatibility only).
    #[serde(rename = "SHA-1")]
    Sha1,
    /// SHA-256.
    #[serde(rename = "SHA-256")]
    Sha256,
    /// SHA-384.
    #[serde(rename = "SHA-384")]
    Sha384,
    /// SHA-512.
    #[serde(rename = "SHA-512")]
    Sha512,
}

/// What a mask entry does, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskOperation<'a> {
    /// `maskWithChars`.
    Chars(u32),
    /// `hash`.
    Hash(&'a HashSpec),
    /// `truncateToChars`.
    Truncate(u32),
}

impl ColumnMaskSpec {
    /// Its one operation; `None` when it names none or several (a problem).
    pub fn operation(&self) -> Option<MaskOperation<'_>> {
        // A length below 1 reads as 0, which `problems` refuses.
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        match (self.mask_with_chars, &self.hash, self.truncate_to_chars) {
            (Some(n), None, None) => Some(MaskOperation::Chars(count(n))),
            (None, Some(h), None) => Some(MaskOperation::Hash(h)),
            (None, None, Some(n)) => Some(MaskOperation::Truncate(count(n))),
            _ => None,
        }
    }
}

impl crate::PgKafkaConnectorSpec {
    /// Every Secret key a hashed column's salt comes from, with its field.
    pub fn salt_refs(&self) -> Vec<(String, &SecretKeyRef)> {
        let mut refs = Vec::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            for (j, target) in listener.targets.iter().enumerate() {
                for (k, mask) in target.column_masks.iter().enumerate() {
                    if let Some(hash) = &mask.hash {
                        let field = format!(
                            "spec.listeners[{i}].targets[{j}].columnMasks[{k}].hash.saltSecretRef"
                        );
                        refs.push((field, &hash.salt_secret_ref));
                    }
                }
            }
        }
        refs
    }
}

/// What is wrong with a target's `columnMasks` at `field`, as (path,
/// message): each entry has one operation, some columns, positive lengths,
/// and no column is named by two entries.
pub(crate) fn problems(masks: &[ColumnMaskSpec], field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (k, m) in masks.iter().enumerate() {
        let here = format!("{field}[{k}]");
        match m.operation() {
            None => out.push((
                here.clone(),
                "give exactly one of maskWithChars, hash and truncateToChars".into(),
            )),
            Some(MaskOperation::Chars(0) | MaskOperation::Truncate(0)) => {
                out.push((here.clone(), "a length must be at least 1".into()))
            }
            Some(_) => {}
        }
        if m.columns.is_empty() {
            out.push((
                format!("{here}.columns"),
                "must name at least one column".into(),
            ));
        }
        for (c, name) in m.columns.iter().enumerate() {
            if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                out.push((
                    format!("{here}.columns[{c}]"),
                    format!(
                        "{name:?} is already masked by {field}[{first}]; one operation per column"
                    ),
                ));
            } else {
                seen.push((name, k));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(yaml: &str) -> ColumnMaskSpec {
        serde_yaml::from_str(yaml).expect("parses")
    }

    #[test]
    fn one_operation_per_entry_and_per_column() {
        let ok = [
            mask("{columns: [email], maskWithChars: 8}"),
            mask(
                "{columns: [ssn], hash: {algorithm: SHA-256, saltSecretRef: {name: s, key: salt}}}",
            ),
            mask("{columns: [notes], truncateToChars: 3}"),
        ];
        assert!(problems(&ok, "m").is_empty());
        let bad = [
            mask("{columns: [email], maskWithChars: 8, truncateToChars: 2}"),
            mask("{columns: [notes], truncateToChars: 0}"),
            mask("{columns: [email], maskWithChars: 3}"),
        ];
        let found = problems(&bad, "t.columnMasks");
        assert_eq!(
            found,
            vec![
                (
                    "t.columnMasks[0]".to_owned(),
                    "give exactly one of maskWithChars, hash and truncateToChars".to_owned()
                ),
                (
                    "t.columnMasks[1]".to_owned(),
                    "a length must be at least 1".to_owned()
                ),
                (
                    "t.columnMasks[2].columns[0]".to_owned(),
                    "\"email\" is already masked by t.columnMasks[0]; one operation per column"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn algorithms_go_by_their_java_names() {
        let h: HashSpec =
            serde_yaml::from_str("{algorithm: SHA-512, saltSecretRef: {name: s, key: k}}")
                .expect("parses");
        assert_eq!(h.algorithm, HashAlgorithm::Sha512);
        assert!(serde_yaml::from_str::<HashSpec>(
            "{algorithm: sha256, saltSecretRef: {name: s, key: k}}"
        )
        .is_err());
    }
}
