//! A guard against expressions too deep to plan. sqlparser builds `a + b + c ...`
//! as a left-deep tree without counting it against its recursion limit, and the
//! recursive walks after it (sqlparser's visitors, DataFusion's planner) then
//! overflow the stack, aborting the process, at a few thousand terms. ember
//! refuses such a statement up front with a clear error instead.

use datafusion::common::{Result, plan_err};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Most binary operators one expression may chain. Deep enough for generated
/// SQL (a sum of hundreds of features), shallow enough that planning fits in a
/// 2 MiB thread stack.
pub const MAX_OPERATOR_CHAIN: usize = 1000;

/// Fails when some expression in `sql` chains more than [`MAX_OPERATOR_CHAIN`]
/// binary operators at one level of parentheses. Tokenizer errors are left to
/// the parser, which reports them better.
pub fn check_operator_chains(sql: &str, dialect: &dyn Dialect) -> Result<()> {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return Ok(());
    };
    // One counter per open parenthesis; a clause keyword or comma ends a chain.
    let mut chains = vec![0usize];
    for token in tokens {
        let top = chains.len() - 1;
        let current = &mut chains[top];
        match token {
            Token::LParen => chains.push(0),
            Token::RParen if top > 0 => {
                chains.pop();
            }
            Token::Comma | Token::SemiColon => *current = 0,
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret => *current += 1,
            Token::Word(word) => match word.keyword {
                Keyword::AND | Keyword::OR => *current += 1,
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::ON
                | Keyword::CASE
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END
                | Keyword::HAVING
                | Keyword::BY
                | Keyword::LIMIT
                | Keyword::AS
                | Keyword::UNION
                | Keyword::JOIN => *current = 0,
                _ => {}
            },
            _ => {}
        }
        if chains.last().is_some_and(|&n| n > MAX_OPERATOR_CHAIN) {
            return plan_err!(
                "expression too long: more than {MAX_OPERATOR_CHAIN} operators in a row; split it into parts (e.g. partial sums in a subquery)"
            );
        }
    }
    Ok(())
}

/// The deepest nesting of parentheses and `CASE ... END` in `sql`: what counts
/// against the parser's recursion limit. Tokenizer errors count as no nesting.
pub fn nesting_depth(sql: &str, dialect: &dyn Dialect) -> usize {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return 0;
    };
    let (mut depth, mut deepest) = (0usize, 0usize);
    for token in tokens {
        match token {
            Token::LParen => depth += 1,
            Token::Word(w) if w.keyword == Keyword::CASE => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::END => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest = deepest.max(depth);
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn check(sql: &str) -> Result<()> {
        check_operator_chains(sql, &GenericDialect {})
    }

    #[test]
    fn nesting_counts_parentheses_and_case() {
        let depth = |sql: &str| nesting_depth(sql, &GenericDialect {});
        assert_eq!(depth("select 1"), 0);
        assert_eq!(depth("select ((1)), (2)"), 2);
        assert_eq!(
            depth("select case when (a) then case b when 1 then 2 end end"),
            2
        );
    }

    #[test]
    fn long_chains_are_refused_wide_selects_are_not() {
        let chain = |n: usize, op: &str| vec!["x"; n + 1].join(op);
        assert!(check(&format!("select {}", chain(MAX_OPERATOR_CHAIN, " + "))).is_ok());
        for op in [" + ", " * ", " or ", " || "] {
            let err = check(&format!(
                "select {} from t",
                chain(MAX_OPERATOR_CHAIN + 1, op)
            ));
            assert!(
                err.unwrap_err().to_string().contains("expression too long"),
                "{op}"
            );
        }
        let nested = format!("select ({}) + 1", chain(MAX_OPERATOR_CHAIN + 1, "-"));
        assert!(check(&nested).is_err());
        // Many short expressions side by side are fine.
        let wide: Vec<String> = (0..3000).map(|i| format!("a{i} + b{i} as c{i}")).collect();
        assert!(check(&format!("select {} from t", wide.join(", "))).is_ok());
        let cases: Vec<String> = (0..2000)
            .map(|i| format!("when x = {i} then {i}"))
            .collect();
        assert!(check(&format!("select case {} end from t", cases.join(" "))).is_ok());
    }
}
