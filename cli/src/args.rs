//! The command line, as clap sees it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ember_engine::cluster::ClusterSecret;

/// ember: SQL and machine learning over Parquet, in one process or on a cluster.
#[derive(Debug, Parser)]
#[command(
    name = "ember",
    version,
    about,
    propagate_version = true,
    after_help = "\
Examples:
  ember datagen tpch --scale 1 --out data/tpch
  ember sql --data-dir data/tpch -c 'select count(*) from lineitem'
  ember cluster up --executors 2
  ember sql --master df://127.0.0.1:50050 --data-dir data/tpch -f query.sql
  ember datagen classification --rows 1000000 --out data/ml/higgs
  ember sql --data-dir data/ml -f examples/higgs.sql     # train, evaluate, predict"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL statements, embedded or on a cluster; an interactive prompt without -c/-f.
    Sql(SqlArgs),
    /// Run a local cluster of processes.
    Cluster(ClusterArgs),
    /// Run a scheduler process (for clusters across machines).
    Scheduler(SchedulerArgs),
    /// Run an executor process (for clusters across machines).
    Executor(ExecutorArgs),
    /// Serve Arrow Flight SQL, so ADBC, JDBC and other standard clients reach ember.
    Serve(ServeArgs),
    /// Write test data sets as Parquet.
    Datagen(DatagenArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// A header line, then one line per row.
    Csv,
    /// One JSON object per row, one per line.
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Statements from -c and -f run in the order given; each result set is printed in turn.

Examples:
  ember sql -c 'select 1 + 1'
  ember sql --data-dir data/tpch -f q1.sql --format csv
  ember sql --master df://127.0.0.1:50050 --data-dir data/tpch -c 'select count(*) from orders'
  ember sql --data-dir data/tpch          # interactive prompt; \\q quits

Machine learning: CREATE MODEL, EVALUATE MODEL, SHOW MODELS, DESCRIBE MODEL, DROP MODEL,
EXPORT MODEL m TO 'm.json' (trees: XGBoost's JSON), predict('model', ...), training_info('model')
and feature_importance('model'). Model types: linear_regression, logistic_regression, kmeans,
boosted_tree_regressor, boosted_tree_classifier, random_forest_regressor,
random_forest_classifier. SET ember.ml.device = 'auto' | 'cpu' |
'cuda' chooses where training kernels run (see the README).")]
pub struct SqlArgs {
    /// SQL to run (repeatable).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// File of SQL statements to run (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Run on the cluster whose scheduler is at this URL; embedded when absent.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub master: Option<String>,
    /// How results are printed.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Register each Parquet file or folder of Parquet files directly under DIR
    /// as a table named after it.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where models are kept: a directory or an object store URL (s3://bucket/prefix).
    /// Default: ~/.ember/models.
    #[arg(long, value_name = "URL", env = "EMBER_MODEL_STORE")]
    pub model_store: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Every statement `ember sql` runs runs here too: queries stream as Arrow record batches, and
SET, CREATE EXTERNAL TABLE and prepared statements belong to the client's connection. Tables
under --data-dir, tables ingested from clients (written there as Parquet) and the model store
are shared by all connections.

Binding an address other than loopback needs --tls-cert, --tls-key and --auth-token-file
(or --insecure). SIGHUP re-reads the token file; so does any change to it.

Examples:
  ember serve --data-dir data/tpch
  ember serve --bind 0.0.0.0 --data-dir /srv/tables --auth-token-file tokens \\
      --tls-cert server.pem --tls-key server.key
  # from Python: pip install adbc-driver-flightsql pyarrow pandas, then
  #   adbc_driver_flightsql.dbapi.connect('grpc://127.0.0.1:32010')")]
pub struct ServeArgs {
    /// Run statements on the cluster whose scheduler is at this URL; embedded when absent.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub master: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 32010)]
    pub port: u16,
    /// Register each Parquet file or folder under DIR as a table every connection
    /// sees; bulk ingest writes new tables here.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where models are kept: a directory or an object store URL (s3://bucket/prefix).
    /// Default: ~/.ember/models.
    #[arg(long, value_name = "URL", env = "EMBER_MODEL_STORE")]
    pub model_store: Option<String>,
    /// File of accepted tokens, one per line: every call must carry
    /// `authorization: Bearer <token>` (a Flight handshake with any user name and
    /// a token as password returns it).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve on a non-loopback address without TLS and tokens.
    #[arg(long)]
    pub insecure: bool,
    /// Client connections served at once; calls on more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start one scheduler and N executor processes on this machine, in the
    /// foreground until Ctrl-C.
    #[command(after_help = "\
Each executor says whether it found a GPU; training rounds that can use one go to GPU executors.
An executor silent for 15 s is dropped and the statements it was running run again.
With a cluster secret (EMBER_CLUSTER_TOKEN or --cluster-token-file) every process and client\nmust hold it: all channels are TLS between holders. Without one, keep the ports on a trusted\nnetwork (RELIABILITY.md).

Example:
  ember cluster up --executors 2
  # then, in another terminal:
  ember sql --master df://127.0.0.1:50050 -c 'select 1'")]
    Up(ClusterUpArgs),
}

#[derive(Debug, Args)]
pub struct ClusterUpArgs {
    /// Executor processes to start.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Scheduler port (0 picks a free one).
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Address every process binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Task slots per executor (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub slots: usize,
    /// Folder for the processes' logs and shuffle files; a temporary one, removed
    /// at the end, when absent. Shuffle files are removed in either case.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Memory the training rows kept on each executor may take, e.g. 4GiB
    /// (default: half of the machine's memory, each).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub training_memory: Option<usize>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ember scheduler --bind 0.0.0.0 --port 50050")]
pub struct SchedulerArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// Host name executors and clients reach this scheduler by (default: the bind address).
    #[arg(long)]
    pub external_host: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "An executor that finds a GPU registers as gpu-<id> and gets the training rounds that can use one.\nGive it the cluster's secret (EMBER_CLUSTER_TOKEN or --cluster-token-file) when the cluster has one;\nwithout one, bind to a network only the cluster and its clients reach.\n\nExample:\n  ember executor --scheduler 10.0.0.5:50050 --bind 0.0.0.0 --external-host 10.0.0.6 --port 50051"
)]
pub struct ExecutorArgs {
    /// The scheduler, as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
    pub scheduler: String,
    /// Address to bind the shuffle (Flight) service.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Port of the shuffle service (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Port the scheduler pushes tasks to (0 picks a free one). With a cluster secret it
    /// listens on loopback only, and tasks come through --port over TLS.
    #[arg(long, default_value_t = 0)]
    pub grpc_port: u16,
    /// Host name others reach this executor by (default: the bind address).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Tasks run at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub slots: usize,
    /// Folder for shuffle and spill files (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Port of the training service, where CREATE MODEL's driver runs rounds over
    /// the rows kept here (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub training_port: u16,
    /// Memory the training rows kept here may take, e.g. 4GiB or 512MiB
    /// (default: half of the machine's memory).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub training_memory: Option<usize>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// The cluster secret, for the commands that start or reach a cluster.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// File whose first line is the cluster secret (default: $EMBER_CLUSTER_TOKEN).
    /// With a secret, every channel between a cluster's processes and its clients
    /// is TLS that only holders of the same secret get through.
    #[arg(long, value_name = "FILE")]
    pub cluster_token_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret from the file, else from `EMBER_CLUSTER_TOKEN`, else none.
    pub fn resolve(&self) -> datafusion::common::Result<Option<Arc<ClusterSecret>>> {
        ClusterSecret::resolve(self.cluster_token_file.as_deref())
    }
}

/// `4GiB`, `512MiB`, `100KiB` or a number of bytes.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown unit '{other}' (use KiB, MiB, GiB or TiB)")),
    };
    match number.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok((n * scale) as usize),
        _ => Err(format!("'{text}' is not a size such as 4GiB or 512MiB")),
    }
}

#[derive(Debug, Args)]
pub struct DatagenArgs {
    #[command(subcommand)]
    pub command: DatagenCommand,
}

#[derive(Debug, Subcommand)]
pub enum DatagenCommand {
    /// The eight TPC-H tables, one folder of Parquet files each.
    #[command(after_help = "Example:\n  ember datagen tpch --scale 1 --out data/tpch --parts 4")]
    Tpch(TpchArgs),
    /// A seeded HIGGS-shaped set: float features f0.., a 0/1 label, a regression target
    /// (`--kind nonlinear`: interactions that trees find and a linear model cannot).
    #[command(
        after_help = "Example:\n  ember datagen classification --rows 2000000 --features 28 --out data/higgs --parts 4"
    )]
    Classification(ClassificationArgs),
}

#[derive(Debug, Args)]
pub struct ClassificationArgs {
    /// Rows to write.
    #[arg(long)]
    pub rows: u64,
    /// Float feature columns (f0, f1, ...).
    #[arg(long, default_value_t = 28)]
    pub features: usize,
    /// Output folder (one table).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Files to write.
    #[arg(long, default_value_t = 1)]
    pub parts: usize,
    /// Seed: the same seed gives the same rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How the label depends on the features: 'linear' (a logistic model) or
    /// 'nonlinear' (interactions of feature pairs, where trees beat a linear model).
    #[arg(long, default_value = "linear")]
    pub kind: ember_engine::datagen::DataKind,
}

#[derive(Debug, Args)]
pub struct TpchArgs {
    /// Scale factor (1 = about 8.7M rows, 6M of them lineitem).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Files per table.
    #[arg(long, default_value_t = 1)]
    pub parts: usize,
}
