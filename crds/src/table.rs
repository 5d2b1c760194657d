//! Table names as users write them (`schema.table`, SQL quoting allowed) and as
//! PostgreSQL reports them (separate, unquoted schema and name).

use std::fmt;

/// A schema-qualified table name, each part exactly as stored in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedTable {
    /// Schema (namespace) name.
    pub schema: String,
    /// Table name.
    pub name: String,
}

/// Why a table name could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableNameError {
    /// Nothing between the dots, or nothing at all.
    #[error("empty identifier in {0:?}")]
    Empty(String),
    /// A quote was opened and never closed.
    #[error("unterminated quoted identifier in {0:?}")]
    Unterminated(String),
    /// More than `schema.table`.
    #[error("{0:?} has more than two parts; write schema.table")]
    TooManyParts(String),
    /// Something other than a dot after a closing quote.
    #[error("unexpected character after quoted identifier in {0:?}")]
    AfterQuote(String),
}

impl QualifiedTable {
    /// Parses `table`, `schema.table`, or either part double-quoted as in SQL.
    /// Unquoted parts fold to lower case, as PostgreSQL folds them.
    pub fn parse(input: &str) -> Result<Self, TableNameError> {
        let mut parts = Vec::new();
        let mut chars = input.trim().chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(TableNameError::Unterminated(input.to_owned())),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(TableNameError::AfterQuote(input.to_owned()));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    part.extend(c.to_lowercase());
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(TableNameError::Empty(input.to_owned()));
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some(_dot) => continue,
            }
        }
        match parts.len() {
            1 => Ok(QualifiedTable {
                schema: "public".to_owned(),
                name: parts.remove(0),
            }),
            2 => {
                let name = parts.remove(1);
                Ok(QualifiedTable {
                    schema: parts.remove(0),
                    name,
                })
            }
            _ => Err(TableNameError::TooManyParts(input.to_owned())),
        }
    }

    /// The default Kafka topic `<prefix>.<schema>.<table>`, with characters Kafka
    /// does not allow in topic names replaced by `_` (as Debezium does).
    pub fn default_topic(&self, prefix: &str) -> String {
        let sanitize = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{prefix}.{}.{}",
            sanitize(&self.schema),
            sanitize(&self.name)
        )
    }
}

impl fmt::Display for QualifiedTable {
    /// SQL form, each part quoted: `"public"."orders"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\".\"{}\"",
            self.schema.replace('"', "\"\""),
            self.name.replace('"', "\"\"")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(schema: &str, name: &str) -> QualifiedTable {
        QualifiedTable {
            schema: schema.into(),
            name: name.into(),
        }
    }

    #[test]
    fn parses_plain_qualified_and_quoted_names() {
        assert_eq!(QualifiedTable::parse("orders"), Ok(t("public", "orders")));
        assert_eq!(
            QualifiedTable::parse("Shop.Orders"),
            Ok(t("shop", "orders"))
        );
        assert_eq!(
            QualifiedTable::parse(r#""Sales"."Order.Lines""#),
            Ok(t("Sales", "Order.Lines"))
        );
        assert_eq!(
            QualifiedTable::parse(r#"public."we""ird""#),
            Ok(t("public", "we\"ird"))
        );
    }

    #[test]
    fn rejects_malformed_names() {
        assert!(matches!(
            QualifiedTable::parse(""),
            Err(TableNameError::Empty(_))
        ));
        assert!(matches!(
            QualifiedTable::parse("a..b"),
            Err(TableNameError::Empty(_))
        ));
        assert!(matches!(
            QualifiedTable::parse("a.b.c"),
            Err(TableNameError::TooManyParts(_))
        ));
        assert!(matches!(
            QualifiedTable::parse("\"abc"),
            Err(TableNameError::Unterminated(_))
        ));
        assert!(matches!(
            QualifiedTable::parse("\"a\"b"),
            Err(TableNameError::AfterQuote(_))
        ));
    }

    #[test]
    fn displays_quoted_and_builds_safe_topics() {
        let table = t("Sales", "Order \"Lines\"");
        assert_eq!(table.to_string(), r#""Sales"."Order ""Lines""""#);
        assert_eq!(table.default_topic("cdc"), "cdc.Sales.Order__Lines_");
    }
}
