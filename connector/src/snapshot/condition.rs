//! A snapshot's condition (Debezium's `additional-conditions`): a SQL
//! boolean expression that selects the rows a requested snapshot reads,
//! written into each chunk's query as `WHERE (<condition>) AND <key> > ...`.
//!
//! It is user text going into SQL, so it is checked twice before a
//! snapshot starts: here, that it is one expression that cannot close the
//! parentheses around it or end the statement (no `;`, no comments, every
//! parenthesis, quote and dollar quote balanced); then by PostgreSQL, which
//! prepares `SELECT 1 FROM <table> WHERE (<condition>)` (syntax, columns,
//! boolean type) and whose message is the refusal. Chunks are read in
//! read-only transactions.

use pgkafka_crds::{PostgresSpec, QualifiedTable};

use crate::credentials::PgCredentials;
use crate::source::connection::connect_verified;
use crate::source::tls::VerifiedName;

/// Longest condition taken.
const MAX_CHARS: usize = 4096;

/// Why a condition cannot be one expression.
fn refuse(condition: &str, why: &str) -> String {
    format!("condition {condition:?}: {why}")
}

/// Checks that `condition` is one expression: balanced parentheses that
/// never close below the first level, quotes and dollar quotes closed, no
/// `;` and no comments outside them.
pub(crate) fn check_shape(condition: &str) -> Result<(), String> {
    if condition.trim().is_empty() {
        return Err(refuse(condition, "is empty"));
    }
    if condition.chars().count() > MAX_CHARS {
        return Err(refuse(
            condition,
            &format!("is longer than {MAX_CHARS} characters"),
        ));
    }
    let chars: Vec<char> = condition.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        i = match c {
            '\'' => {
                let escapes = i > 0
                    && matches!(chars[i - 1], 'e' | 'E')
                    && (i < 2 || !is_ident(chars[i - 2]));
                closing_quote(&chars, i + 1, '\'', escapes)
                    .ok_or_else(|| refuse(condition, "a string literal is not closed"))?
            }
            '"' => closing_quote(&chars, i + 1, '"', false)
                .ok_or_else(|| refuse(condition, "a quoted identifier is not closed"))?,
            '$' if i == 0 || !is_ident(chars[i - 1]) => match dollar_tag(&chars, i) {
                Some(tag) => closing_dollar(&chars, i + tag.len(), &tag)
                    .ok_or_else(|| refuse(condition, "a dollar-quoted string is not closed"))?,
                None => i + 1,
            },
            '-' if next == Some('-') => return Err(refuse(condition, "comments are not taken")),
            '/' if next == Some('*') => return Err(refuse(condition, "comments are not taken")),
            ';' => return Err(refuse(condition, "`;` is not taken: one expression only")),
            '(' => {
                depth += 1;
                i + 1
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    refuse(condition, "a `)` closes a parenthesis it did not open")
                })?;
                i + 1
            }
            _ => i + 1,
        };
    }
    if depth > 0 {
        return Err(refuse(condition, "a `(` is not closed"));
    }
    Ok(())
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// The index just past the quote that closes one opened before `from`
/// (a doubled quote stands for itself; with `escapes`, a backslash too).
fn closing_quote(chars: &[char], mut from: usize, quote: char, escapes: bool) -> Option<usize> {
    while from < chars.len() {
        match chars[from] {
            '\\' if escapes => from += 2,
            c if c == quote && chars.get(from + 1) == Some(&quote) => from += 2,
            c if c == quote => return Some(from + 1),
            _ => from += 1,
        }
    }
    None
}

/// `$tag$` (or `$$`) starting at `at`, if one does.
fn dollar_tag(chars: &[char], at: usize) -> Option<String> {
    let mut end = at + 1;
    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    let first_ok = end == at + 1 || !chars[at + 1].is_ascii_digit();
    (first_ok && chars.get(end) == Some(&'$')).then(|| chars[at..=end].iter().collect())
}

/// The index just past the `tag` that closes a dollar quote opened before `from`.
fn closing_dollar(chars: &[char], from: usize, tag: &str) -> Option<usize> {
    let tag: Vec<char> = tag.chars().collect();
    (from..=chars.len().saturating_sub(tag.len()))
        .find(|&i| chars[i..i + tag.len()] == tag[..])
        .map(|i| i + tag.len())
}

/// Connection settings to have PostgreSQL check a condition.
#[derive(Clone)]
pub(crate) struct ConditionCheck {
    /// Where PostgreSQL is.
    pub postgres: PostgresSpec,
    /// Who logs in.
    pub credentials: PgCredentials,
}

impl ConditionCheck {
    /// PostgreSQL's word on `condition` for each of `tables`: `Ok` when it
    /// prepares `SELECT 1 FROM <table> WHERE (<condition>)`, else its
    /// message naming the table.
    pub async fn check(&self, tables: &[QualifiedTable], condition: &str) -> Result<(), String> {
        check_shape(condition)?;
        let client = connect_verified(
            "pgkafka-snapshot-condition",
            &self.postgres,
            &self.credentials,
            &VerifiedName::default(),
        )
        .await
        .map_err(|e| format!("cannot check the condition: {e}"))?;
        for table in tables {
            let sql = format!("SELECT 1 FROM {table} WHERE ({condition})");
            client.prepare(&sql).await.map_err(|e| {
                format!(
                    "condition {condition:?} on {table}: {}",
                    pgkafka_postgres::postgres_detail(&e)
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_expression_passes() {
        for ok in [
            "created_at > now() - interval '7 days'",
            "status IN ('open', 'paid') AND (amount > 10 OR vip)",
            "note = 'it''s ; -- not a comment (' AND note <> E'\\' )'",
            "\"Weird;\"\"col\" = $x$ ) ; -- $x$",
            "id = ANY('{1,2}'::int[]) AND a - -1 > 0",
            "x::text ~ '^a/b'",
        ] {
            assert_eq!(check_shape(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_leave_its_parentheses_is_refused() {
        for (bad, why) in [
            ("true) OR (true", "closes a parenthesis it did not open"),
            ("true; DROP TABLE t", "`;` is not taken"),
            ("true -- ", "comments are not taken"),
            ("true /* */", "comments are not taken"),
            ("(true", "is not closed"),
            ("a = 'open", "string literal is not closed"),
            ("a = E'\\'", "string literal is not closed"),
            ("\"col = 1", "quoted identifier is not closed"),
            ("a = $q$ x", "dollar-quoted string is not closed"),
            ("  ", "is empty"),
        ] {
            let err = check_shape(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check_shape(&"x".repeat(5000)).is_err());
    }
}
