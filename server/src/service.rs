//! The Flight SQL service: statements, prepared statements, catalog calls and
//! bulk ingest, each on its connection's session.
//!
//! A query is planned at GetFlightInfo (the client learns its schema) and runs
//! when its ticket is read, its rows streaming as they are made. A statement
//! that is not a query (DDL, SET, CREATE MODEL, EVALUATE, ...) runs at
//! GetFlightInfo, since a client may never read its few rows, and they are held
//! for the ticket.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::catalog::SchemaProvider;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::TableType;
use ember_engine::cluster::ClusterSecret;
use ember_engine::{EmberContext, EmberStatement};
use futures::{Stream, TryStreamExt, stream};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Tokens, check_basic};
use crate::connection::{Connection, Pending, Prepared};
use crate::ingest::ingest;
use crate::status;
use crate::tables::SharedTables;

type DoGetStream = <EmberFlightSql as FlightService>::DoGetStream;

/// ember behind Flight SQL.
pub struct EmberFlightSql {
    pub master: Option<String>,
    pub cluster_secret: Option<Arc<ClusterSecret>>,
    pub model_store: Option<String>,
    pub shared: Arc<SharedTables>,
    pub tokens: Option<Arc<Tokens>>,
}

impl EmberFlightSql {
    /// The connection a call came on, and its session (opened at its first call).
    async fn session<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Arc<Connection>, EmberContext), Status> {
        let connection = Connection::of(request)?;
        let session = connection.session(|| self.open()).await?.clone();
        Ok((connection, session))
    }

    async fn open(&self) -> Result<EmberContext, Status> {
        let mut ember =
            EmberContext::connect_with_secret(self.master.as_deref(), self.cluster_secret.clone())
                .await
                .map_err(status)?;
        if let Some(url) = &self.model_store {
            ember = ember.with_model_store(url).map_err(status)?;
        }
        self.shared.install(&ember).map_err(status)?;
        Ok(ember)
    }

    /// The statements of `sql`, refused before any runs if one would drop a
    /// shared table.
    async fn parse(
        &self,
        session: &EmberContext,
        sql: &str,
    ) -> Result<Vec<EmberStatement>, Status> {
        let statements = session.parse(sql).map_err(status)?;
        for statement in &statements {
            self.shared
                .refuse_shared_drop(session, statement)
                .await
                .map_err(status)?;
        }
        Ok(statements)
    }

    /// Runs every statement of `sql` and returns the rows the last changed.
    async fn update(&self, session: &EmberContext, sql: &str) -> Result<i64, Status> {
        let mut changed = 0;
        for statement in self.parse(session, sql).await? {
            changed = update_count(&session.execute(statement).await.map_err(status)?.batches);
        }
        Ok(changed)
    }

    /// Runs every statement of `sql` but the last, and plans the last (or runs
    /// it, when it is not a query); its answer waits under the handle returned.
    async fn prepare_answer(
        &self,
        connection: &Connection,
        session: &EmberContext,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<u8>), Status> {
        let mut statements = self.parse(session, sql).await?;
        let last = statements
            .pop()
            .ok_or_else(|| Status::invalid_argument("no SQL statement in the query"))?;
        for statement in statements {
            session.execute(statement).await.map_err(status)?;
        }
        let pending = match session.plan_query(&last).await.map_err(status)? {
            Some(query) => Pending::Query(query),
            None => ran(session.execute(last).await.map_err(status)?)?,
        };
        let handle = connection.new_handle("statement");
        let schema = pending_schema(&pending);
        connection.hold(handle.clone(), pending);
        Ok((schema, handle))
    }
}

/// A statement's rows; one without rows but with notes (CREATE MODEL's "trained
/// m version 1 ...") answers its notes, one row each, as `ember sql` prints them.
fn ran(output: ember_engine::StatementOutput) -> Result<Pending, Status> {
    if !output.schema.fields().is_empty() || output.notes.is_empty() {
        return Ok(Pending::Rows(output.schema, output.batches));
    }
    let schema = Arc::new(Schema::new(vec![Field::new("note", DataType::Utf8, false)]));
    let notes = StringArray::from(output.notes);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(notes)]).map_err(arrow_status)?;
    Ok(Pending::Rows(schema, vec![batch]))
}

fn pending_schema(pending: &Pending) -> SchemaRef {
    match pending {
        Pending::Query(query) => query.schema(),
        Pending::Rows(schema, _) => schema.clone(),
    }
}

/// A FlightInfo with one endpoint, read from this server with `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The FlightInfo of a catalog call: its schema, and the command itself as
/// the ticket (its rows are made when the ticket is read).
fn command_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}

fn statement_ticket(handle: Vec<u8>) -> Vec<u8> {
    TicketStatementQuery {
        statement_handle: handle.into(),
    }
    .as_any()
    .encode_to_vec()
}

/// A schema in Flight's IPC form.
fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let message: Result<IpcMessage, _> =
        SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into();
    let IpcMessage(bytes) =
        message.map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?;
    Ok(bytes)
}

/// Rows as Flight data, each error as the status the client should see.
fn flight_stream<S>(schema: SchemaRef, rows: S) -> Response<DoGetStream>
where
    S: Stream<Item = Result<RecordBatch, DataFusionError>> + Send + 'static,
{
    let rows = rows.map_err(|e| FlightError::Tonic(Box::new(status(e))));
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(rows)
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    flight_stream(batch.schema(), stream::iter([Ok(batch)]))
}

async fn answer(session: &EmberContext, pending: Pending) -> Result<Response<DoGetStream>, Status> {
    match pending {
        Pending::Query(query) => {
            let rows = session.execute_query(query).await.map_err(status)?;
            Ok(flight_stream(rows.schema(), rows))
        }
        Pending::Rows(schema, batches) => Ok(flight_stream(
            schema,
            stream::iter(batches.into_iter().map(Ok)),
        )),
    }
}

/// The rows an update changed: the `count` a DML statement returns, else 0.
fn update_count(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .filter_map(|c| c.as_any().downcast_ref::<UInt64Array>())
        .flat_map(|c| c.iter().flatten())
        .sum::<u64>() as i64
}

/// The first row of a bound parameter batch, cast to the types the plan gives
/// its parameters.
fn parameter_values(
    batches: &[RecordBatch],
    types: &[(String, Option<DataType>)],
) -> Result<Vec<ScalarValue>, Status> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(Status::invalid_argument(format!(
            "a prepared query takes one row of parameters; {rows} were bound"
        )));
    }
    let batch = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .expect("one batch holds the row");
    if batch.num_columns() != types.len() {
        return Err(Status::invalid_argument(format!(
            "the statement has {} parameters; {} were bound",
            types.len(),
            batch.num_columns()
        )));
    }
    batch
        .columns()
        .iter()
        .zip(types)
        .map(|(column, (name, ty))| {
            let value = ScalarValue::try_from_array(column, 0).map_err(status)?;
            match ty {
                Some(ty) if value.data_type() != *ty => value.cast_to(ty).map_err(|e| {
                    Status::invalid_argument(format!(
                        "parameter {name}: cannot use a {} as {ty}: {e}",
                        value.data_type()
                    ))
                }),
                _ => Ok(value),
            }
        })
        .collect()
}

/// What GetSqlInfo answers.
fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "ember");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::FlightSqlServerBulkIngestion, true);
        info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, true);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlQuotedIdentifierCase, 3i32);
        info.build().expect("the server's SQL info is well formed")
    })
}

/// Every (catalog, schema) the session has, with the schema.
fn schemas(session: &EmberContext) -> Vec<(String, String, Arc<dyn SchemaProvider>)> {
    let ctx = session.session();
    let mut found = Vec::new();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if let Some(schema) = catalog.schema(&schema_name) {
                found.push((catalog_name.clone(), schema_name, schema));
            }
        }
    }
    found
}

fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

#[tonic::async_trait]
impl FlightSqlService for EmberFlightSql {
    type FlightService = EmberFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = match &self.tokens {
            Some(tokens) => Some(check_basic(tokens, request.metadata())?),
            None => None,
        };
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().unwrap_or_default().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream::iter([Ok(reply)])));
        if let Some(token) = token {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("a token that is not a header value"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (connection, session) = self.session(&request).await?;
        let (schema, handle) = self
            .prepare_answer(&connection, &session, &query.query)
            .await?;
        flight_info(&schema, statement_ticket(handle), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (connection, session) = self.session(&request).await?;
        let pending = connection.take(&ticket.statement_handle)?;
        answer(&session, pending).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, session) = self.session(&request).await?;
        self.update(&session, &command.query).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (connection, session) = self.session(&request).await?;
        let mut statements = self.parse(&session, &query.query).await?;
        if statements.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "a prepared statement holds one SQL statement; found {}",
                statements.len()
            )));
        }
        let planned = session
            .plan_query(&statements.remove(0))
            .await
            .map_err(status)?;
        let (dataset, parameters) = match &planned {
            Some(plan) => {
                let fields: Vec<Field> = plan
                    .parameters()
                    .map_err(status)?
                    .into_iter()
                    .map(|(name, ty)| Field::new(name, ty.unwrap_or(DataType::Null), true))
                    .collect();
                (plan.schema(), Arc::new(Schema::new(fields)))
            }
            None => (Arc::new(Schema::empty()), Arc::new(Schema::empty())),
        };
        let handle = connection.new_handle("prepared");
        connection.prepare(
            handle.clone(),
            Prepared {
                sql: query.query,
                query: planned,
                parameters: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let connection = Connection::of(&request)?;
        connection.close_prepared(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let connection = Connection::of(&request)?;
        let handle = query.prepared_statement_handle.to_vec();
        let prepared = connection.prepared(&handle)?;
        let batches: Vec<RecordBatch> = decode(request.into_inner()).try_collect().await?;
        let types = match &prepared.query {
            Some(plan) => plan.parameters().map_err(status)?,
            None => Vec::new(),
        };
        let values = parameter_values(&batches, &types)?;
        connection.bind(&handle, values)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (connection, session) = self.session(&request).await?;
        let prepared = connection.prepared(&query.prepared_statement_handle)?;
        match bound(prepared)? {
            (_, Some(plan)) => {
                let ticket = query.as_any().encode_to_vec();
                flight_info(&plan.schema(), ticket, request.into_inner())
            }
            (sql, None) => {
                let (schema, handle) = self.prepare_answer(&connection, &session, &sql).await?;
                flight_info(&schema, statement_ticket(handle), request.into_inner())
            }
        }
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (connection, session) = self.session(&request).await?;
        let prepared = connection.prepared(&query.prepared_statement_handle)?;
        match bound(prepared)? {
            (_, Some(plan)) => answer(&session, Pending::Query(plan)).await,
            (sql, None) => {
                let (_, handle) = self.prepare_answer(&connection, &session, &sql).await?;
                answer(&session, connection.take(&handle)?).await
            }
        }
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (connection, session) = self.session(&request).await?;
        let prepared = connection.prepared(&query.prepared_statement_handle)?;
        match bound(prepared)? {
            (_, Some(plan)) => {
                let rows = session.execute_query(plan).await.map_err(status)?;
                let batches: Vec<RecordBatch> = rows.try_collect().await.map_err(status)?;
                Ok(update_count(&batches))
            }
            (sql, None) => self.update(&session, &sql).await,
        }
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, session) = self.session(&request).await?;
        let batches = decode(request.into_inner());
        ingest(&self.shared, &session, &command, batches).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        for catalog in session.session().catalog_names() {
            builder.append(catalog);
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        for (catalog_name, schema_name, _) in schemas(&session) {
            builder.append(catalog_name, schema_name);
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (_, session) = self.session(&request).await?;
        let mut builder: GetTablesBuilder = query.into_builder();
        for (catalog_name, schema_name, schema) in schemas(&session) {
            for table_name in schema.table_names() {
                let Some(table) = schema.table(&table_name).await.map_err(status)? else {
                    continue;
                };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        table_type_name(table.table_type()),
                        &table.schema(),
                    )
                    .map_err(arrow_status)?;
            }
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in ["LOCAL TEMPORARY", "TABLE", "VIEW"] {
            builder.append(table_type);
        }
        Ok(batch_stream(builder.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(sql_info()).schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(sql_info())
            .build()
            .map_err(arrow_status)?;
        Ok(batch_stream(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A prepared statement's SQL, and its plan with the bound parameters in
/// place when it is a query.
fn bound(prepared: Prepared) -> Result<(String, Option<ember_engine::QueryPlan>), Status> {
    let Some(plan) = prepared.query else {
        if prepared.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Status::invalid_argument(
                "parameters were bound to a statement that is not a query; only queries take them",
            ));
        }
        return Ok((prepared.sql, None));
    };
    let wanted = plan.parameters().map_err(status)?.len();
    let plan = match prepared.parameters {
        Some(values) => plan.with_parameters(values).map_err(status)?,
        None if wanted > 0 => {
            return Err(Status::invalid_argument(format!(
                "the prepared statement has {wanted} parameters and none were bound"
            )));
        }
        None => plan,
    };
    Ok((prepared.sql, Some(plan)))
}

/// The record batches of a DoPut's Flight data.
fn decode(
    data: PeekableFlightDataStream,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + Unpin {
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        data.map_err(FlightError::from),
    )
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}
