//! The bad-input corpus (RELIABILITY.md): broken files, clashing schemas, huge
//! literals, deep nesting, NaN and infinity, empty tables and hand-edited model
//! files. Each is refused with one clear line, nothing panics, and the model
//! store is left as it was.

use std::path::Path;

use ember_engine::EmberContext;
use ember_tests::walk;

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    walk(dir)
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            (file, bytes)
        })
        .collect()
}

async fn refused(ember: &EmberContext, sql: &str, needle: &str) {
    let shown: String = sql.chars().take(120).collect();
    let err = match ember.sql(sql).await {
        Ok(_) => panic!("accepted: {shown}"),
        Err(err) => ember_engine::errors::one_line(&err),
    };
    assert!(
        err.contains(needle),
        "{shown}\n  gave: {err}\n  expected: {needle}"
    );
    assert!(err.len() < 1000, "a {}-byte error for {shown}", err.len());
}

async fn write_parquet(ember: &EmberContext, sql: &str, path: &Path) {
    let copy = format!("copy ({sql}) to '{}' stored as parquet", path.display());
    ember.sql(&copy).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_corpus_is_refused_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (data, store) = (dir.path().join("data"), dir.path().join("models"));
    std::fs::create_dir_all(&data).unwrap();
    let ember = EmberContext::embedded()
        .unwrap()
        .with_model_store(store.to_str().unwrap())
        .unwrap();

    // Files: a good table, a truncated copy, garbage, an empty file, and a
    // table whose two files disagree on a column's type.
    let good = data.join("good.parquet");
    write_parquet(
        &ember,
        "select cast(v as double) as x, cast(v % 2 as double) as y from generate_series(1, 5000) t(v)",
        &good,
    )
    .await;
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(data.join("truncated.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(data.join("garbage.parquet"), b"this is not parquet at all").unwrap();
    std::fs::write(data.join("empty_file.parquet"), b"").unwrap();
    std::fs::create_dir_all(data.join("clash")).unwrap();
    write_parquet(&ember, "select 1 as a", &data.join("clash/1.parquet")).await;
    write_parquet(&ember, "select 'one' as a", &data.join("clash/2.parquet")).await;
    let register = |table: &str| {
        format!(
            "create external table {table} stored as parquet location '{}'",
            data.join(format!("{table}.parquet")).display()
        )
    };
    ember.sql(&register("good")).await.unwrap();
    // A table with no rows at all.
    write_parquet(
        &ember,
        "select x, y from good where x < 0",
        &data.join("no_rows.parquet"),
    )
    .await;
    ember.sql(&register("no_rows")).await.unwrap();
    let linear = "create model lin options (model_type = 'linear_regression', label = 'y') as select x, y from good";
    ember.sql(linear).await.unwrap();
    let before = snapshot(&store);

    let external = |name: &str| format!("select * from '{}'", data.join(name).display());
    refused(
        &ember,
        &external("truncated.parquet"),
        "truncated.parquet is not a readable Parquet file: Parquet error: Invalid Parquet file. Corrupt footer",
    )
    .await;
    refused(
        &ember,
        &external("garbage.parquet"),
        "garbage.parquet is not a readable Parquet file",
    )
    .await;
    // A page whose bytes no longer match its header's CRC (pyarrow wrote the
    // checksums, as Spark does): an error naming the file, not a wrong sum.
    let checked = data.join("checked");
    std::fs::create_dir_all(&checked).unwrap();
    let fixture = ember_tests::fixtures().join("parquet/checksummed.parquet");
    std::fs::copy(&fixture, checked.join("part-0.parquet")).unwrap();
    let sum_b = format!("select sum(b) as s from '{}/'", checked.display());
    let sum = ember.sql(&sum_b).await.unwrap();
    let sum: f64 = ember_tests::to_text(&sum[0]).rows[0][0].parse().unwrap();
    assert_eq!(sum, 2.5 * (0..4000).sum::<i64>() as f64);
    std::fs::write(
        checked.join("part-1.parquet"),
        ember_tests::flip_a_page_byte(&fixture, "b"),
    )
    .unwrap();
    refused(
        &ember,
        &sum_b,
        "part-1.parquet is not a readable Parquet file: Parquet error: Page CRC checksum mismatch (row group 0, column b)",
    )
    .await;

    // A zero-byte file holds no rows; DataFusion reads it as an empty table.
    let empty = ember.sql(&external("empty_file.parquet")).await.unwrap();
    assert_eq!(empty.iter().map(|o| o.num_rows()).sum::<usize>(), 0);
    refused(
        &ember,
        &format!("select sum(a) from '{}/'", data.join("clash").display()),
        "Fail to merge schema field 'a' because the from data_type = Utf8 does not equal Int64",
    )
    .await;

    // Huge and odd literals: each planned exactly or refused, never a crash.
    let big = ember
        .sql("select 123456789012345678901234567890123456789012345 as x, 1e999 as y")
        .await
        .unwrap();
    assert_eq!(big[0].num_rows(), 1);
    let long_string = format!("select length('{}') as n", "a".repeat(4 << 20));
    let long = ember.sql(&long_string).await.unwrap();
    assert_eq!(long[0].num_rows(), 1);
    refused(
        &ember,
        "select 'unterminated",
        "Unterminated string literal",
    )
    .await;

    // Deep nesting: parentheses hit the parser's recursion limit; a long chain
    // of operators is refused before it can overflow the stack.
    let parens = format!("select {}1{}", "(".repeat(5000), ")".repeat(5000));
    refused(&ember, &parens, "statement nested too deeply: 5000 levels").await;
    let chain = format!("select {}", vec!["1"; 50_000].join(" + "));
    refused(&ember, &chain, "expression too long").await;
    let ors = format!(
        "select * from good where {}",
        (0..5000)
            .map(|i| format!("x = {i}"))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    refused(&ember, &ors, "expression too long").await;
    let subqueries = format!("select {}1{}", "(select ".repeat(500), ")".repeat(500));
    refused(
        &ember,
        &subqueries,
        "statement nested too deeply: 500 levels",
    )
    .await;
    // CASE inside CASE: sqlparser backtracked and blamed a token
    // ("Expected: end of statement, found: 0", issue 12).
    let cases = format!(
        "select {}1{} from good",
        "case when x > 0 then ".repeat(48),
        " else 0 end".repeat(48)
    );
    refused(&ember, &cases, "statement nested too deeply: 48 levels").await;
    // A query in the place of a table, where a statement was written.
    refused(
        &ember,
        "select * from (show models)",
        "SHOW MODELS is a statement: in a query, use show_models()",
    )
    .await;

    // NaN, infinity and empty training data.
    let with = |rows: &str| {
        format!(
            "create model m options (model_type = 'linear_regression', label = 'y') as select * from (values {rows}) t(x, y)"
        )
    };
    refused(
        &ember,
        &with("(1.0, 2.0), ('NaN'::double, 1.0), (3.0, 4.0)"),
        "feature 'x' has a NULL, NaN or infinite value",
    )
    .await;
    refused(
        &ember,
        &with("(1.0, 2.0), ('Infinity'::double, 1.0), (3.0, 4.0)"),
        "feature 'x' has a NULL, NaN or infinite value",
    )
    .await;
    refused(
        &ember,
        &with("(1.0, 2.0), (2.0, '-Infinity'::double), (3.0, 4.0)"),
        "label 'y' has NaN or infinite values",
    )
    .await;
    refused(
        &ember,
        &with("(1e308, 1e308), (-1e308, 1e308), (1e308, -1e308)"),
        "not a finite number",
    )
    .await;
    refused(
        &ember,
        "create model m options (model_type = 'linear_regression', label = 'y') as select x, y from no_rows",
        "no training rows",
    )
    .await;
    refused(
        &ember,
        "create model m options (model_type = 'kmeans', num_clusters = 3) as select x from no_rows",
        "num_clusters = 3 is more than the 0 distinct rows",
    )
    .await;
    refused(
        &ember,
        "evaluate model lin on (select x, y from no_rows)",
        "no rows",
    )
    .await;
    assert_eq!(
        snapshot(&store),
        before,
        "a refused statement changed the store"
    );

    // Model files edited by hand: invalid JSON, wrong dimensions, NaN written
    // as null. Reading them is a clear error naming the model; the files stay.
    let file = store.join("lin/v1/model.json");
    let original = std::fs::read_to_string(&file).unwrap();
    ember
        .sql("create model other options (model_type = 'linear_regression', label = 'y') as select x, y from good")
        .await
        .unwrap();
    let edits = [
        (
            original[..original.len() / 2].to_string(),
            "invalid model.json",
        ),
        (
            original.replacen("\"coefficients\": [", "\"coefficients\": [1.0, ", 1),
            "2 coefficients for 1 features",
        ),
        (
            original.replacen("\"intercept\": ", "\"intercept\": null, \"was\": ", 1),
            "invalid model.json",
        ),
        ("[]".to_string(), "invalid model.json"),
    ];
    for (text, needle) in edits {
        std::fs::write(&file, &text).unwrap();
        for sql in [
            "describe model lin",
            "select predict('lin', x) from good",
            "evaluate model lin",
        ] {
            refused(&ember, sql, needle).await;
        }
        // SHOW MODELS still lists every model, and flags the broken one.
        let listed = ember_tests::to_text(&ember.sql_one("show models").await.unwrap());
        let status = |name: &str| {
            let row = listed.rows.iter().find(|r| r[0] == name).unwrap();
            row.last().unwrap().clone()
        };
        assert_eq!(status("other"), "ok");
        assert!(
            status("lin").starts_with("unreadable: ") && status("lin").contains(needle),
            "{listed:?}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
    std::fs::write(&file, &original).unwrap();
    let ok = ember.sql("select predict('lin', 2.0) as p").await.unwrap();
    assert_eq!(ok[0].num_rows(), 1);
}
