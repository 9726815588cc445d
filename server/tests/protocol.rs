//! The Flight SQL protocol as arrow-flight's own client speaks it, against
//! `ember_server::serve` on a real socket: statements, prepared statements
//! with parameters, the catalog calls, bulk ingest, tokens and the
//! connection bound. (Python's ADBC driver is tested against `ember serve` as
//! a process, in the cli crate.)

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementIngest, SqlInfo, TableDefinitionOptions,
    TableExistsOption, TableNotExistOption,
};
use arrow_flight::{FlightInfo, error::FlightError};
use datafusion::arrow::array::{
    Array, AsArray, BinaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use datafusion::arrow::ipc::reader::StreamReader;
use ember_server::{ServeOptions, serve};
use futures::{TryStreamExt, stream};
use parquet::arrow::ArrowWriter;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A server on a free loopback port, stopped when dropped.
struct Server {
    address: SocketAddr,
    _stop: oneshot::Sender<()>,
    data: TempDir,
}

fn options(data: &Path) -> ServeOptions {
    ServeOptions {
        master: None,
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        data_dir: Some(data.to_path_buf()),
        model_store: Some(data.join("models").display().to_string()),
        auth_token_file: None,
        tls: None,
        insecure: false,
        max_connections: 64,
        cluster_token_file: None,
    }
}

/// `people.parquet` under `dir`: (id, name, score) × 4.
fn write_people(dir: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec!["ann", "bob", "cy", "di"])),
            Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5, 3.5])),
        ],
    )
    .unwrap();
    let file = File::create(dir.join("people.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

async fn start(configure: impl FnOnce(&mut ServeOptions, &Path)) -> Server {
    let data = tempfile::tempdir().unwrap();
    write_people(data.path());
    let mut options = options(data.path());
    configure(&mut options, data.path());
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let ready = move |address| {
            let _ = ready_tx.send(address);
        };
        let stopped = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = serve(options, ready, stopped).await {
            panic!("serve: {e}");
        }
    });
    let address = ready_rx.await.expect("the server starts");
    Server {
        address,
        _stop: stop_tx,
        data,
    }
}

/// A client on a connection of its own.
async fn client(server: &Server) -> FlightSqlServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    FlightSqlServiceClient::new(channel)
}

/// Every batch of every endpoint of `info`.
async fn read(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let stream = client.do_get(ticket).await.expect("do_get");
        batches.extend(stream.try_collect::<Vec<_>>().await.expect("rows"));
    }
    batches
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.expect(sql);
    read(client, info).await
}

fn code(error: &FlightError) -> Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        other => panic!("not a gRPC status: {other}"),
    }
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let array = datafusion::arrow::compute::cast(
                b.column_by_name(column).expect(column),
                &DataType::Utf8,
            )
            .unwrap();
            let array = array.as_string::<i32>().clone();
            (0..array.len())
                .map(|i| array.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_query_streams_its_rows_with_the_schema_announced() {
    let server = start(|_, _| {}).await;
    let mut client = client(&server).await;
    let info = client
        .execute(
            "select name, score * 2 as doubled from people where id > 1 order by id".into(),
            None,
        )
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        announced
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["name", "doubled"]
    );
    let batches = read(&mut client, info).await;
    assert_eq!(strings(&batches, "name"), ["bob", "cy", "di"]);
    assert_eq!(strings(&batches, "doubled"), ["3.0", "5.0", "7.0"]);
    // A ticket is read once.
    let again = client
        .execute("select 1 as one".into(), None)
        .await
        .unwrap();
    let ticket = again.endpoint[0].ticket.clone().unwrap();
    client
        .do_get(ticket.clone())
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let error = match client.do_get(ticket).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(code(&error), Code::NotFound, "{error}");
}

#[tokio::test]
async fn errors_are_one_line_statuses_and_the_server_goes_on() {
    let server = start(|_, _| {}).await;
    let mut client = client(&server).await;
    let error = client
        .execute("select nope from people".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    assert!(error.to_string().contains("nope"), "{error}");
    let error = client.execute("selec 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    assert_eq!(
        strings(&query(&mut client, "select 41 + 1 as n").await, "n"),
        ["42"]
    );
}

#[tokio::test]
async fn prepared_statements_take_parameters_by_position() {
    let server = start(|_, _| {}).await;
    let mut client = client(&server).await;
    for sql in [
        "select name from people where id >= $1 and score < $2 order by id",
        "select name from people where id >= ? and score < ? order by id",
    ] {
        let mut prepared = client.prepare(sql.into(), None).await.unwrap();
        let parameters = prepared.parameter_schema().unwrap().clone();
        assert_eq!(parameters.fields().len(), 2, "{sql}: {parameters:?}");
        assert_eq!(parameters.field(0).data_type(), &DataType::Int64, "{sql}");
        assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "name");
        for (low, high, expected) in [(2, 3.0, vec!["bob", "cy"]), (1, 1.0, vec!["ann"])] {
            // Bound as other types than the plan's: cast on the server.
            let bound = RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("a", DataType::Int32, false),
                    Field::new("b", DataType::Float32, false),
                ])),
                vec![
                    Arc::new(Int32Array::from(vec![low])),
                    Arc::new(Float32Array::from(vec![high as f32])),
                ],
            )
            .unwrap();
            prepared.set_parameters(bound).unwrap();
            let info = prepared.execute().await.unwrap();
            assert_eq!(
                strings(&read(&mut client, info).await, "name"),
                expected,
                "{sql}"
            );
        }
        prepared.close().await.unwrap();
    }
    // Without its parameters, a clear error.
    let mut prepared = client
        .prepare("select name from people where id = $1".into(), None)
        .await
        .unwrap();
    let error = prepared.execute().await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    assert!(error.to_string().contains("none were bound"), "{error}");
}

#[tokio::test]
async fn statements_that_are_not_queries_run_and_updates_count() {
    let server = start(|_, _| {}).await;
    let mut client = client(&server).await;
    let path = server.data.path().join("made");
    let sql = format!(
        "copy (select * from people) to '{}/' stored as parquet",
        path.display()
    );
    assert_eq!(client.execute_update(sql, None).await.unwrap(), 4);
    let rows = query(
        &mut client,
        &format!(
            "create external table made stored as parquet location '{}/'; \
             select count(*) as n from made",
            path.display()
        ),
    )
    .await;
    assert_eq!(strings(&rows, "n"), ["4"]);
}

#[tokio::test]
async fn catalog_calls_list_what_sql_sees() {
    let server = start(|_, _| {}).await;
    let mut client = client(&server).await;
    let info = client.get_catalogs().await.unwrap();
    assert!(strings(&read(&mut client, info).await, "catalog_name").contains(&"datafusion".into()));
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&read(&mut client, info).await, "db_schema_name"),
        ["public"]
    );
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("peo%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = read(&mut client, info).await;
    assert_eq!(strings(&tables, "table_name"), ["people"]);
    assert_eq!(strings(&tables, "table_type"), ["TABLE"]);
    let schema_bytes = tables[0]
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<BinaryArray>()
        .unwrap()
        .value(0)
        .to_vec();
    let schema = StreamReader::try_new(std::io::Cursor::new(schema_bytes), None)
        .unwrap()
        .schema();
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "name", "score"]
    );
    let info = client.get_table_types().await.unwrap();
    assert!(strings(&read(&mut client, info).await, "table_type").contains(&"VIEW".into()));
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    let info = read(&mut client, info).await;
    assert_eq!(info[0].num_rows(), 1);
    let names: Vec<u32> = info[0]
        .column(0)
        .as_primitive::<UInt32Type>()
        .values()
        .to_vec();
    assert_eq!(names, [SqlInfo::FlightSqlServerName as u32]);
}

#[tokio::test]
async fn each_connection_has_its_own_settings_and_tables() {
    let server = start(|_, _| {}).await;
    let mut one = client(&server).await;
    let mut two = client(&server).await;
    query(&mut one, "set datafusion.execution.batch_size = 1234").await;
    query(&mut one, "create view mine as select id from people").await;
    let setting = "show datafusion.execution.batch_size";
    assert_eq!(strings(&query(&mut one, setting).await, "value"), ["1234"]);
    assert_eq!(strings(&query(&mut two, setting).await, "value"), ["8192"]);
    assert_eq!(
        strings(
            &query(&mut one, "select count(*) as n from mine").await,
            "n"
        ),
        ["4"]
    );
    let error = two
        .execute("select * from mine".into(), None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("mine"), "{error}");
    // The --data-dir tables are everyone's, and cannot be dropped by one.
    let error = two
        .execute("drop table people".into(), None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("shared by every connection"),
        "{error}"
    );
    assert_eq!(
        strings(
            &query(&mut one, "select count(*) as n from people").await,
            "n"
        ),
        ["4"]
    );
}

fn frame(ids: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, false),
            Field::new("id", DataType::Int64, false),
        ])),
        vec![
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|&i| i as f64 / 2.0),
            )),
            Arc::new(Int64Array::from(ids.to_vec())),
        ],
    )
    .unwrap()
}

fn ingest_command(table: &str, if_exists: TableExistsOption) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Create as i32,
            if_exists: if_exists as i32,
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

#[tokio::test]
async fn bulk_ingest_writes_a_parquet_table_every_connection_sees() {
    let server = start(|_, _| {}).await;
    let mut one = client(&server).await;
    let mut two = client(&server).await;
    let sent = |ids: &'static [i64]| stream::iter([Ok(frame(ids))]);
    let command = ingest_command("points", TableExistsOption::Fail);
    assert_eq!(
        one.execute_ingest(command.clone(), sent(&[1, 2, 3]))
            .await
            .unwrap(),
        3
    );
    let error = one.execute_ingest(command, sent(&[4])).await.unwrap_err();
    assert!(error.to_string().contains("points"), "{error}");
    let append = ingest_command("points", TableExistsOption::Append);
    assert_eq!(one.execute_ingest(append, sent(&[4, 5])).await.unwrap(), 2);
    let count = "select count(*) as n, sum(id) as s from points";
    let rows = query(&mut two, count).await;
    assert_eq!(
        (strings(&rows, "n"), strings(&rows, "s")),
        (vec!["5".into()], vec!["15".into()])
    );
    let replace = ingest_command("points", TableExistsOption::Replace);
    assert_eq!(two.execute_ingest(replace, sent(&[7])).await.unwrap(), 1);
    assert_eq!(strings(&query(&mut one, count).await, "s"), ["7"]);
    // Appending other columns is refused and leaves the table as it was.
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("y", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["a"]))],
    )
    .unwrap();
    let append = ingest_command("points", TableExistsOption::Append);
    let error = one
        .execute_ingest(append, stream::iter([Ok(other)]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("points"), "{error}");
    assert_eq!(strings(&query(&mut one, count).await, "s"), ["7"]);
    assert!(server.data.path().join("points").is_dir());
    let hidden: Vec<_> = std::fs::read_dir(server.data.path().join("points"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') || name.starts_with('_'))
        .collect();
    assert!(hidden.is_empty(), "staged files left: {hidden:?}");
    // A name that is a path is refused.
    let command = ingest_command("../escape", TableExistsOption::Fail);
    let error = one.execute_ingest(command, sent(&[1])).await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error}");
    // Trained on, as a user trains on a frame they hold.
    let rows = query(
        &mut one,
        "create model line options (model_type = 'linear_regression', label = 'x') \
         as select id, x from points",
    )
    .await;
    assert!(
        strings(&rows, "note")[0].contains("trained line"),
        "{rows:?}"
    );
    let rows = query(&mut two, "select predict('line', id) as p from points").await;
    let p: f64 = strings(&rows, "p")[0].parse().unwrap();
    assert!((p - 3.5).abs() < 1e-6, "{p}");
}

fn token_file(dir: &Path, tokens: &[&str]) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, tokens.join("\n")).unwrap();
    path
}

#[tokio::test]
async fn calls_need_a_token_from_the_file_and_the_handshake_gives_one() {
    let server = start(|options, dir| {
        options.auth_token_file = Some(token_file(dir, &["# ops", "s3cret", "other"]));
    })
    .await;
    let mut anonymous = client(&server).await;
    let error = anonymous
        .execute("select 1".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "{error}");
    let mut wrong = client(&server).await;
    wrong.set_token("guess".into());
    let error = wrong.execute("select 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "{error}");
    let mut bad_password = client(&server).await;
    let error = bad_password.handshake("me", "guess").await.unwrap_err();
    // arrow-flight's client reports a failed handshake as an Arrow error.
    assert!(error.to_string().contains("authentication"), "{error}");

    let mut user = client(&server).await;
    user.handshake("me", "s3cret").await.unwrap();
    assert_eq!(user.token().map(String::as_str), Some("s3cret"));
    assert_eq!(
        strings(&query(&mut user, "select 2 as n").await, "n"),
        ["2"]
    );

    // A token taken out of the file stops working at the next call.
    let path = server.data.path().join("tokens");
    std::fs::write(&path, "other\n").unwrap();
    // The file's time may not have moved within its granularity; its size has.
    let error = user.execute("select 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated, "{error}");
    let mut other = client(&server).await;
    other.set_token("other".into());
    assert_eq!(
        strings(&query(&mut other, "select 3 as n").await, "n"),
        ["3"]
    );
}

#[tokio::test]
async fn connections_beyond_the_bound_are_told_so() {
    let server = start(|options, _| options.max_connections = 2).await;
    let mut one = client(&server).await;
    let mut two = client(&server).await;
    query(&mut one, "select 1").await;
    query(&mut two, "select 1").await;
    let mut three = client(&server).await;
    let error = three.execute("select 1".into(), None).await.unwrap_err();
    assert_eq!(code(&error), Code::ResourceExhausted, "{error}");
    assert!(error.to_string().contains("--max-connections"), "{error}");
    drop(one);
    drop(three);
    // The closed connection's place is free again.
    let mut admitted = None;
    for _ in 0..50 {
        let mut four = client(&server).await;
        if four.execute("select 1".into(), None).await.is_ok() {
            admitted = Some(four);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        admitted.is_some(),
        "a closed connection's place was not freed"
    );
    query(&mut two, "select 1").await;
}

#[tokio::test]
async fn an_open_address_without_tls_and_tokens_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let mut options = options(data.path());
    options.bind = "0.0.0.0".parse().unwrap();
    let error = serve(options, |_| {}, async {}).await.unwrap_err();
    assert!(error.to_string().contains("--insecure"), "{error}");
    let mut options = self::options(data.path());
    options.auth_token_file = Some(data.path().join("missing"));
    let error = serve(options, |_| {}, async {}).await.unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}
