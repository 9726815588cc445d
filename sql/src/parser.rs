//! Splitting and parsing SQL scripts: DataFusion's statements plus ember's model
//! statements (CREATE MODEL, EVALUATE MODEL, SHOW MODELS, DESCRIBE MODEL, DROP MODEL).

use std::fmt;

use datafusion::common::{DataFusionError, Result, plan_datafusion_err};
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ExprWithAlias, Query, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::{Dialect, dialect_from_str};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;
use ember_ml_ops::models::OptionValue;

/// `CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name [TRANSFORM (...)] OPTIONS (...) AS query`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateModel {
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    /// TRANSFORM items; empty without TRANSFORM.
    pub transform: Vec<ExprWithAlias>,
    pub options: Vec<(String, OptionValue)>,
    pub query: Box<Query>,
}

/// One statement of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum EmberStatement {
    /// A statement DataFusion plans itself (queries, DDL, `SET`, `EXPLAIN`, ...).
    DataFusion(Box<Statement>),
    CreateModel(Box<CreateModel>),
    /// `EXPLAIN CREATE MODEL ...`: where training runs, without training.
    ExplainCreateModel(Box<CreateModel>),
    /// `EVALUATE MODEL name [ON (query)]`.
    EvaluateModel {
        name: String,
        on: Option<Box<Query>>,
    },
    ShowModels,
    /// `DESCRIBE MODEL name [VERSION n]`.
    DescribeModel {
        name: String,
        version: Option<u64>,
    },
    /// `DROP MODEL [IF EXISTS] name [VERSION n]`: every version, or one.
    DropModel {
        name: String,
        if_exists: bool,
        version: Option<u64>,
    },
    /// `EXPORT MODEL name [VERSION n] TO 'path'`.
    ExportModel {
        name: String,
        version: Option<u64>,
        path: String,
    },
}

impl fmt::Display for CreateModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE ")?;
        if self.or_replace {
            write!(f, "OR REPLACE ")?;
        }
        write!(f, "MODEL ")?;
        if self.if_not_exists {
            write!(f, "IF NOT EXISTS ")?;
        }
        write!(f, "{}", self.name)?;
        if !self.transform.is_empty() {
            let items: Vec<String> = self.transform.iter().map(|t| t.to_string()).collect();
            write!(f, " TRANSFORM ({})", items.join(", "))?;
        }
        let options: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        write!(f, " OPTIONS ({}) AS {}", options.join(", "), self.query)
    }
}

impl fmt::Display for EmberStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmberStatement::DataFusion(statement) => write!(f, "{statement}"),
            EmberStatement::CreateModel(create) => write!(f, "{create}"),
            EmberStatement::ExplainCreateModel(create) => write!(f, "EXPLAIN {create}"),
            EmberStatement::EvaluateModel { name, on } => {
                write!(f, "EVALUATE MODEL {name}")?;
                if let Some(on) = on {
                    write!(f, " ON ({on})")?;
                }
                Ok(())
            }
            EmberStatement::ShowModels => write!(f, "SHOW MODELS"),
            EmberStatement::DescribeModel { name, version } => {
                write!(f, "DESCRIBE MODEL {name}{}", version_text(*version))
            }
            EmberStatement::DropModel {
                name,
                if_exists,
                version,
            } => {
                write!(
                    f,
                    "DROP MODEL {}{name}{}",
                    if *if_exists { "IF EXISTS " } else { "" },
                    version_text(*version)
                )
            }
            EmberStatement::ExportModel {
                name,
                version,
                path,
            } => write!(
                f,
                "EXPORT MODEL {name}{} TO '{}'",
                version_text(*version),
                path.replace('\'', "''")
            ),
        }
    }
}

fn version_text(version: Option<u64>) -> String {
    version.map(|v| format!(" VERSION {v}")).unwrap_or_default()
}

/// Parses a script of `;`-separated statements with the named SQL dialect
/// (DataFusion's `datafusion.sql_parser.dialect`, e.g. `generic`).
///
/// Empty statements (`;;`, trailing `;`, comments only) are skipped.
pub fn parse_statements(sql: &str, dialect: &str) -> Result<Vec<EmberStatement>> {
    let dialect = dialect_from_str(dialect)
        .ok_or_else(|| plan_datafusion_err!("unknown SQL dialect '{dialect}'"))?;
    crate::depth::check_operator_chains(sql, dialect.as_ref())?;
    parse_with(sql, dialect.as_ref()).map_err(|e| too_deep(e, sql, dialect.as_ref()))
}

/// sqlparser stops at [`RECURSION_LIMIT`] levels of nesting, but inside some
/// constructs (CASE) it backtracks and reports whatever token it stopped at
/// ("Expected: end of statement, found: x"). A statement that nests that deep
/// is told so instead.
fn too_deep(error: DataFusionError, sql: &str, dialect: &dyn Dialect) -> DataFusionError {
    let depth = crate::depth::nesting_depth(sql, dialect);
    if depth + NESTING_MARGIN < RECURSION_LIMIT {
        return error;
    }
    plan_datafusion_err!(
        "statement nested too deeply: {depth} levels of parentheses and CASE, and SQL is parsed \
         to {RECURSION_LIMIT} levels at most; flatten it (e.g. CASE WHEN a THEN x WHEN b THEN y ... END)"
    )
}

/// sqlparser's (and so DataFusion's) default recursion limit.
const RECURSION_LIMIT: usize = 50;
/// Levels a statement spends before its first parenthesis or CASE.
const NESTING_MARGIN: usize = 6;

fn parse_with(sql: &str, dialect: &dyn Dialect) -> Result<Vec<EmberStatement>> {
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .build()?;
    let mut statements = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        if parser.parser.peek_token().token == Token::EOF {
            break;
        }
        let statement = match ember_statement(&mut parser).map_err(sql_error)? {
            Some(statement) => statement,
            None => EmberStatement::DataFusion(Box::new(parser.parse_statement()?)),
        };
        statements.push(statement);
        let next = parser.parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return Err(sql_error(ParserError::ParserError(format!(
                "Expected: end of statement, found: {next}"
            ))));
        }
    }
    Ok(statements)
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

/// Whether the `n`th token ahead is the word `word` (any case).
fn word_at(parser: &DFParser, n: usize, word: &str) -> bool {
    matches!(parser.parser.peek_nth_token(n).token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// Parses one of ember's statements if one starts here; `None` leaves the
/// tokens to DataFusion.
fn ember_statement(p: &mut DFParser) -> Result<Option<EmberStatement>, ParserError> {
    let create_at = |p: &DFParser, n: usize| {
        word_at(p, n, "create")
            && (word_at(p, n + 1, "model")
                || (word_at(p, n + 1, "or")
                    && word_at(p, n + 2, "replace")
                    && word_at(p, n + 3, "model")))
    };
    if create_at(p, 0) {
        return Ok(Some(EmberStatement::CreateModel(Box::new(create_model(
            p,
        )?))));
    }
    if word_at(p, 0, "explain") && create_at(p, 1) {
        p.parser.next_token();
        return Ok(Some(EmberStatement::ExplainCreateModel(Box::new(
            create_model(p)?,
        ))));
    }
    if word_at(p, 0, "evaluate") && word_at(p, 1, "model") {
        p.parser.next_token();
        p.parser.next_token();
        let name = p.parser.parse_identifier()?.value;
        let on = if p.parser.parse_keyword(Keyword::ON) {
            p.parser.expect_token(&Token::LParen)?;
            let query = p.parser.parse_query()?;
            p.parser.expect_token(&Token::RParen)?;
            Some(query)
        } else {
            None
        };
        return Ok(Some(EmberStatement::EvaluateModel { name, on }));
    }
    if word_at(p, 0, "show") && word_at(p, 1, "models") {
        p.parser.next_token();
        p.parser.next_token();
        return Ok(Some(EmberStatement::ShowModels));
    }
    if (word_at(p, 0, "describe") || word_at(p, 0, "desc")) && word_at(p, 1, "model") {
        p.parser.next_token();
        p.parser.next_token();
        let name = p.parser.parse_identifier()?.value;
        let version = version_clause(p)?;
        return Ok(Some(EmberStatement::DescribeModel { name, version }));
    }
    if word_at(p, 0, "export") && word_at(p, 1, "model") {
        p.parser.next_token();
        p.parser.next_token();
        let name = p.parser.parse_identifier()?.value;
        let version = version_clause(p)?;
        p.parser.expect_keyword(Keyword::TO)?;
        let path = p.parser.parse_literal_string()?;
        return Ok(Some(EmberStatement::ExportModel {
            name,
            version,
            path,
        }));
    }
    if word_at(p, 0, "drop") && word_at(p, 1, "model") {
        p.parser.next_token();
        p.parser.next_token();
        let if_exists = p.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parser.parse_identifier()?.value;
        let version = version_clause(p)?;
        return Ok(Some(EmberStatement::DropModel {
            name,
            if_exists,
            version,
        }));
    }
    Ok(None)
}

/// An optional `VERSION n` (n ≥ 1).
fn version_clause(p: &mut DFParser) -> Result<Option<u64>, ParserError> {
    if !word_at(p, 0, "version") {
        return Ok(None);
    }
    p.parser.next_token();
    let token = p.parser.next_token();
    match &token.token {
        Token::Number(n, _) => match n.parse::<u64>() {
            Ok(v) if v >= 1 => Ok(Some(v)),
            _ => Err(ParserError::ParserError(format!(
                "VERSION takes a version number (1, 2, ...), found: {n}"
            ))),
        },
        _ => Err(ParserError::ParserError(format!(
            "Expected: a version number after VERSION, found: {token}"
        ))),
    }
}

fn create_model(p: &mut DFParser) -> Result<CreateModel, ParserError> {
    p.parser.next_token(); // CREATE
    let or_replace = p.parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    p.parser.next_token(); // MODEL
    let if_not_exists = p
        .parser
        .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    if or_replace && if_not_exists {
        return Err(ParserError::ParserError(
            "CREATE OR REPLACE MODEL and IF NOT EXISTS cannot be used together".into(),
        ));
    }
    let name = p.parser.parse_identifier()?.value;
    let mut transform = Vec::new();
    if word_at(p, 0, "transform") {
        p.parser.next_token();
        p.parser.expect_token(&Token::LParen)?;
        transform = p
            .parser
            .parse_comma_separated(|parser| parser.parse_expr_with_alias())?;
        p.parser.expect_token(&Token::RParen)?;
    }
    let mut options = Vec::new();
    if p.parser.parse_keyword(Keyword::OPTIONS) {
        p.parser.expect_token(&Token::LParen)?;
        options = p.parser.parse_comma_separated(|parser| {
            let key = parser.parse_identifier()?.value.to_ascii_lowercase();
            parser.expect_token(&Token::Eq)?;
            let value = parser.parse_expr()?;
            Ok((key.clone(), option_value(&key, &value)?))
        })?;
        p.parser.expect_token(&Token::RParen)?;
    }
    if !p.parser.parse_keyword(Keyword::AS) {
        let found = p.parser.peek_token();
        return Err(ParserError::ParserError(format!(
            "Expected: OPTIONS (...) AS <query> in CREATE MODEL, found: {found}"
        )));
    }
    let query = p.parser.parse_query()?;
    Ok(CreateModel {
        name,
        or_replace,
        if_not_exists,
        transform,
        options,
        query,
    })
}

/// An option's value: a number, string or boolean literal.
fn option_value(key: &str, expr: &SqlExpr) -> Result<OptionValue, ParserError> {
    let bad = || {
        ParserError::ParserError(format!(
            "option {key} must be a number, string or boolean literal, not {expr}"
        ))
    };
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<f64>().map(OptionValue::Number).map_err(|_| bad()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Ok(OptionValue::Text(s.clone()))
            }
            Value::Boolean(b) => Ok(OptionValue::Bool(*b)),
            _ => Err(bad()),
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match option_value(key, expr)? {
            OptionValue::Number(n) => Ok(OptionValue::Number(-n)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
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

    #[test]
    fn model_statements() {
        let sql = "CREATE OR REPLACE MODEL churn
              TRANSFORM (standard_scale(tenure) AS tenure, one_hot(plan) AS plan, churned)
              OPTIONS (model_type = 'logistic_regression', label = 'churned', l2 = 0.01, seed = -1, flag = true)
              AS SELECT tenure, plan, churned FROM customers;
            EVALUATE MODEL churn ON (SELECT * FROM holdout);
            evaluate model churn;
            SHOW MODELS; DESCRIBE MODEL churn; desc model churn; DROP MODEL IF EXISTS churn; drop model churn;
            EXPLAIN CREATE MODEL m OPTIONS (model_type = 'kmeans', num_clusters = 2) AS SELECT 1 AS x;
            select predict('churn', 1, 'a')";
        let s = parse_statements(sql, "generic").unwrap();
        assert_eq!(s.len(), 10);
        let EmberStatement::CreateModel(create) = &s[0] else {
            panic!("{:?}", s[0])
        };
        assert!(create.or_replace && !create.if_not_exists);
        assert_eq!(create.name, "churn");
        assert_eq!(create.transform.len(), 3);
        assert_eq!(
            create.options[2],
            ("l2".to_string(), OptionValue::Number(0.01))
        );
        assert_eq!(
            create.options[3],
            ("seed".to_string(), OptionValue::Number(-1.0))
        );
        assert_eq!(
            create.options[4],
            ("flag".to_string(), OptionValue::Bool(true))
        );
        assert!(matches!(
            &s[1],
            EmberStatement::EvaluateModel { on: Some(_), .. }
        ));
        assert!(matches!(
            &s[2],
            EmberStatement::EvaluateModel { on: None, .. }
        ));
        assert_eq!(s[3], EmberStatement::ShowModels);
        assert_eq!(
            s[4],
            EmberStatement::DescribeModel {
                name: "churn".into(),
                version: None
            }
        );
        assert_eq!(s[5], s[4]);
        assert_eq!(
            s[6],
            EmberStatement::DropModel {
                name: "churn".into(),
                if_exists: true,
                version: None
            }
        );
        assert_eq!(
            s[7],
            EmberStatement::DropModel {
                name: "churn".into(),
                if_exists: false,
                version: None
            }
        );
        let exports = parse_statements(
            "export model m to 'out/m.json'; EXPORT MODEL m VERSION 2 TO 's3://b/it''s.json'",
            "generic",
        )
        .unwrap();
        assert_eq!(
            exports[1],
            EmberStatement::ExportModel {
                name: "m".into(),
                version: Some(2),
                path: "s3://b/it's.json".into()
            }
        );
        for statement in &exports {
            let again = parse_statements(&statement.to_string(), "generic").unwrap();
            assert_eq!(&again[0], statement);
        }
        let versioned = parse_statements(
            "describe model m version 2; drop model if exists m version 3",
            "generic",
        )
        .unwrap();
        assert_eq!(
            versioned[0],
            EmberStatement::DescribeModel {
                name: "m".into(),
                version: Some(2)
            }
        );
        assert_eq!(versioned[1].to_string(), "DROP MODEL IF EXISTS m VERSION 3");
        for bad in ["describe model m version 0", "drop model m version x"] {
            let err = parse_statements(bad, "generic").unwrap_err().to_string();
            assert!(err.contains("version"), "{bad}: {err}");
        }
        assert!(matches!(&s[8], EmberStatement::ExplainCreateModel(_)));
        assert!(matches!(&s[9], EmberStatement::DataFusion(_)));
        // Round trip through Display.
        let again = parse_statements(&s[0].to_string(), "generic").unwrap();
        assert_eq!(again[0], s[0]);
    }

    #[test]
    fn model_statement_errors() {
        for (sql, needle) in [
            (
                "CREATE MODEL m OPTIONS (model_type = 'kmeans')",
                "AS <query>",
            ),
            (
                "CREATE MODEL m OPTIONS (l2 = abs(1)) AS SELECT 1",
                "literal",
            ),
            (
                "CREATE OR REPLACE MODEL IF NOT EXISTS m AS SELECT 1",
                "cannot be used together",
            ),
            ("DROP MODEL", "identifier"),
            ("SHOW MODELS extra", "end of statement"),
        ] {
            let err = parse_statements(sql, "generic").unwrap_err().to_string();
            assert!(err.contains(needle), "{sql}: {err}");
        }
    }
}
