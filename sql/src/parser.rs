//! Splitting and parsing SQL scripts.

use std::fmt;

use datafusion::common::{Result, plan_datafusion_err};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;

/// One statement of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum EmberStatement {
    /// A statement DataFusion plans itself (queries, DDL, `SET`, `EXPLAIN`, ...).
    DataFusion(Box<Statement>),
}

impl fmt::Display for EmberStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmberStatement::DataFusion(statement) => write!(f, "{statement}"),
        }
    }
}

/// Parses a script of `;`-separated statements with the named SQL dialect
/// (DataFusion's `datafusion.sql_parser.dialect`, e.g. `generic`).
///
/// Empty statements (`;;`, trailing `;`, comments only) are skipped.
pub fn parse_statements(sql: &str, dialect: &str) -> Result<Vec<EmberStatement>> {
    let dialect = dialect_from_str(dialect)
        .ok_or_else(|| plan_datafusion_err!("unknown SQL dialect '{dialect}'"))?;
    let statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .build()?
        .parse_statements()?;
    Ok(statements
        .into_iter()
        .map(|statement| EmberStatement::DataFusion(Box::new(statement)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_script_in_order() {
        let statements = parse_statements(
            "create view v as select 1 as a; select * from v;\n-- done\ndrop view v;",
            "generic",
        )
        .unwrap();
        let texts: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts.len(), 3);
        assert!(texts[0].starts_with("CREATE VIEW v"), "{texts:?}");
        assert!(texts[1].starts_with("SELECT * FROM v"), "{texts:?}");
        assert!(texts[2].starts_with("DROP VIEW v"), "{texts:?}");
    }

    #[test]
    fn empty_script_has_no_statements() {
        assert!(
            parse_statements("  ;; -- nothing\n", "generic")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn syntax_error_names_the_problem() {
        let err = parse_statements("SELEC 1", "generic")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SELEC"), "{err}");
    }

    #[test]
    fn unknown_dialect_is_an_error() {
        let err = parse_statements("select 1", "klingon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("klingon"), "{err}");
    }
}
