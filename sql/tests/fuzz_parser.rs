//! A bounded fuzz run of ember's SQL parser (the model statements and the guards
//! in front of DataFusion's parser): token soups built from the extensions'
//! keywords, and valid statements with random edits, must give a statement or
//! a one-line error, never a panic or a stack overflow. Not run in CI:
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release -p ember-sql --test fuzz_parser -- --ignored
//! ```

use ember_sql::parse_statements;
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "CREATE",
    "OR",
    "REPLACE",
    "MODEL",
    "IF",
    "NOT",
    "EXISTS",
    "TRANSFORM",
    "OPTIONS",
    "AS",
    "SELECT",
    "FROM",
    "WHERE",
    "EVALUATE",
    "ON",
    "SHOW",
    "MODELS",
    "DESCRIBE",
    "DROP",
    "EXPLAIN",
    "predict",
    "predict_proba",
    "m",
    "\"m\"",
    "\"../x\"",
    "x",
    "t",
    "model_type",
    "label",
    "'kmeans'",
    "'linear_regression'",
    "1",
    "-2.5e10",
    "true",
    "NULL",
    "'",
    "\"",
    "(",
    ")",
    ",",
    ";",
    "=",
    "+",
    "*",
    ".",
    "--",
    "/*",
    "*/",
    "\\",
    "\u{0}",
    "é",
    "🙂",
];

const VALID: &[&str] = &[
    "create model m options (model_type = 'kmeans', num_clusters = 3) as select a, b from t",
    "create or replace model m transform (standard_scale(a) as a, b) options (model_type = 'logistic_regression', label = 'y', l2 = 0.1) as select * from t",
    "create model if not exists m options (model_type = 'linear_regression', label = 'y') as select * from t",
    "explain create model m options (model_type = 'kmeans', num_clusters = 2) as select a from t",
    "evaluate model m on (select * from t where a > 1)",
    "show models; describe model m; drop model if exists m",
    "select predict('m', a, b) as p from t",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..40).prop_map(|w| w.join(" "))
}

fn edited() -> impl Strategy<Value = String> {
    (
        prop::sample::select(VALID),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    )
        .prop_map(|(sql, edits)| {
            let mut bytes = sql.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    1 => bytes.insert(i, byte % 128),
                    _ if i < bytes.len() => bytes[i] = byte % 128,
                    _ => {}
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

fn check(sql: &str) {
    if let Err(e) = parse_statements(sql, "generic") {
        let text = e.to_string();
        assert!(!text.is_empty(), "empty error for {sql:?}");
    }
}

proptest! {
    #[test]
    #[ignore = "a fuzz run: PROPTEST_CASES=N cargo test --release -p ember-sql --test fuzz_parser -- --ignored"]
    fn token_soups_never_panic(sql in soup()) {
        check(&sql);
    }

    #[test]
    #[ignore = "a fuzz run: PROPTEST_CASES=N cargo test --release -p ember-sql --test fuzz_parser -- --ignored"]
    fn edited_statements_never_panic(sql in edited()) {
        check(&sql);
    }

    #[test]
    #[ignore = "a fuzz run: PROPTEST_CASES=N cargo test --release -p ember-sql --test fuzz_parser -- --ignored"]
    fn deep_and_long_input_never_overflows(depth in 0usize..20_000, terms in 0usize..60_000) {
        check(&format!("select {}1{}", "(".repeat(depth), ")".repeat(depth)));
        check(&format!("select {}", vec!["a"; terms + 1].join(" * ")));
        check(&format!("create model m options (model_type = 'kmeans') as select {}", vec!["a"; terms + 1].join(" - ")));
    }
}
