//! `ember sql`: statements from -c and -f in the order given, or a prompt.

use std::io::Write;
use std::path::PathBuf;

use clap::ArgMatches;
use datafusion::common::{DataFusionError, Result};
use ember_engine::EmberContext;

use crate::args::SqlArgs;
use crate::output::print_output;
use crate::progress::with_spinner;
use crate::repl;

/// One piece of SQL to run: text given with -c, or a file given with -f.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Command(String),
    File(PathBuf),
}

/// The -c and -f arguments in the order they appeared on the command line.
pub fn ordered_sources(args: &SqlArgs, matches: &ArgMatches) -> Vec<Source> {
    let mut sources: Vec<(usize, Source)> = Vec::new();
    if let Some(indices) = matches.indices_of("commands") {
        sources.extend(
            indices
                .zip(&args.commands)
                .map(|(i, c)| (i, Source::Command(c.clone()))),
        );
    }
    if let Some(indices) = matches.indices_of("files") {
        sources.extend(
            indices
                .zip(&args.files)
                .map(|(i, f)| (i, Source::File(f.clone()))),
        );
    }
    sources.sort_by_key(|(index, _)| *index);
    sources.into_iter().map(|(_, source)| source).collect()
}

/// Runs `ember sql`.
pub async fn run(args: SqlArgs, sources: Vec<Source>) -> Result<()> {
    let secret = match &args.master {
        Some(_) => args.secret.resolve()?,
        None => None,
    };
    let mut ember = EmberContext::connect_with_secret(args.master.as_deref(), secret)
        .await?
        .with_progress(std::sync::Arc::new(crate::progress::TrainingProgress::new()));
    if let Some(url) = &args.model_store {
        ember = ember.with_model_store(url)?;
    }
    if let Some(dir) = &args.data_dir {
        let found = ember.register_data_dir(dir).await?;
        for skipped in &found.skipped {
            eprintln!(
                "warning: {}: skipped '{}': {}",
                dir.display(),
                skipped.name,
                skipped.reason
            );
        }
    }
    if sources.is_empty() {
        return repl::run(&ember, args.format).await;
    }
    for source in sources {
        let sql = match &source {
            Source::Command(sql) => sql.clone(),
            Source::File(path) => std::fs::read_to_string(path).map_err(|e| {
                DataFusionError::Plan(format!("cannot read SQL file {}: {e}", path.display()))
            })?,
        };
        run_script(&ember, &sql, args.format).await?;
    }
    Ok(())
}

/// Runs each statement of `sql` in turn, printing its result before the next
/// one starts.
pub async fn run_script(
    ember: &EmberContext,
    sql: &str,
    format: crate::args::Format,
) -> Result<()> {
    let statements = ember.parse(sql)?;
    let stdout = std::io::stdout();
    for statement in statements {
        let output = with_spinner("running", ember.execute(statement)).await?;
        let mut out = PipeAwareWriter::new(stdout.lock());
        let printed = print_output(&mut out, &output, format).and_then(|()| {
            out.flush()
                .map_err(|e| DataFusionError::External(Box::new(e)))
        });
        if let Err(e) = printed {
            // Arrow's writers flatten I/O errors into text; the writer itself
            // knows whether the reader went away.
            return Err(if out.broken_pipe {
                DataFusionError::IoError(std::io::ErrorKind::BrokenPipe.into())
            } else {
                e
            });
        }
        for note in &output.notes {
            eprintln!("note: {note}");
        }
    }
    Ok(())
}

/// A writer that remembers whether a write failed because the reader of the
/// pipe went away (`ember sql ... | head`).
struct PipeAwareWriter<W> {
    inner: W,
    broken_pipe: bool,
}

impl<W: Write> PipeAwareWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            broken_pipe: false,
        }
    }

    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.broken_pipe = true;
        }
        result
    }
}

impl<W: Write> Write for PipeAwareWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}
