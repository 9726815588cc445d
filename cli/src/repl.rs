//! The interactive prompt: multi-line statements ended by `;`, history kept in
//! `~/.ember_history`, `\q` to quit.

use std::path::PathBuf;

use datafusion::common::Result;
use ember_engine::EmberContext;
use ember_engine::errors::one_line;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::args::Format;
use crate::sql_cmd::run_script;

const PROMPT: &str = "ember> ";
const CONTINUATION: &str = "   ..> ";

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ember_history"))
}

/// Whether `buffer` holds a complete statement: it ends with `;` outside any
/// string literal or comment.
pub fn is_complete(buffer: &str) -> bool {
    let mut in_single = false;
    let mut in_double = false;
    let mut last_significant = None;
    let mut chars = buffer.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '-' if !in_single && !in_double && chars.peek() == Some(&'-') => {
                // A line comment: skip to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last_significant = Some((c, in_single || in_double));
        }
    }
    matches!(last_significant, Some((';', false)))
}

/// What `\?` prints.
const HELP: &str = r"Commands:
  \q              quit (also Ctrl-D)
  \?              this list
  \d              list tables
  \d NAME         the columns of table NAME
Statements end with ';' and may span lines. Besides all of DataFusion's SQL
(SELECT, CREATE EXTERNAL TABLE ... STORED AS PARQUET LOCATION '...', COPY, EXPLAIN, SET):
  CREATE [OR REPLACE] MODEL [IF NOT EXISTS] m [TRANSFORM (...)] OPTIONS (model_type = '...',
      label = '...', ...) AS SELECT ...
  EVALUATE MODEL m [ON (SELECT ...)]
  SHOW MODELS | DESCRIBE MODEL m [VERSION n] | DROP MODEL [IF EXISTS] m [VERSION n]
  EXPORT MODEL m [VERSION n] TO 'path.json'   (trees: XGBoost's JSON model format)
  EXPLAIN CREATE MODEL ...
  predict('m', inputs...), predict_proba('m', inputs...)   ('m@2': version 2)
      predict_probabilities('m', inputs...): every class with its probability
  SELECT * FROM show_models() | describe_model('m' [, n]) | evaluate('m' [, 'query'])
      | confusion_matrix('m' [, 'query']) | training_info('m') | feature_importance('m')
  feature functions: standard_scale, min_max_scale, impute, one_hot, bucketize,
      quantile_bucketize, feature_hash, polynomial_expand (SHOW FUNCTIONS lists all)
";

/// A backslash command of the prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaCommand {
    Help,
    /// Runs as SQL.
    Sql(String),
    Unknown(String),
}

/// The command `line` gives, when it is one (starts with a backslash).
pub fn meta_command(line: &str) -> Option<MetaCommand> {
    let rest = line.strip_prefix('\\')?.trim_end_matches(';').trim();
    let (word, argument) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let argument = argument.trim();
    Some(match (word, argument) {
        ("?" | "h" | "help", _) => MetaCommand::Help,
        ("d", "") => MetaCommand::Sql(
            "SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema') ORDER BY table_name"
                .into(),
        ),
        ("d", table) => MetaCommand::Sql(format!("DESCRIBE {table}")),
        _ => MetaCommand::Unknown(format!("\\{word}")),
    })
}

/// Runs the prompt until `\q`, Ctrl-D, or end of input.
pub async fn run(ember: &EmberContext, format: Format) -> Result<()> {
    let mut editor = DefaultEditor::new()
        .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "ember {} ({}). End statements with ';'; \\? lists commands, \\q quits.",
        env!("CARGO_PKG_VERSION"),
        ember.master()
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && matches!(trimmed, "\\q" | "\\quit" | "quit" | "exit") {
                    break;
                }
                if buffer.is_empty() && trimmed.is_empty() {
                    continue;
                }
                if buffer.is_empty()
                    && let Some(command) = meta_command(trimmed)
                {
                    let _ = editor.add_history_entry(trimmed);
                    match command {
                        MetaCommand::Help => print!("{HELP}"),
                        MetaCommand::Sql(sql) => run_until_ctrl_c(ember, &sql, format).await,
                        MetaCommand::Unknown(what) => {
                            eprintln!("error: unknown command '{what}': \\? lists the commands")
                        }
                    }
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if is_complete(&buffer) {
                    let _ = editor.add_history_entry(buffer.trim_end());
                    run_until_ctrl_c(ember, &buffer, format).await;
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C drops the statement being typed.
                buffer.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs `sql` at the prompt, printing its results or its error. Ctrl-C while it
/// runs cancels it and keeps the prompt: dropping the statement drops its
/// streams, which stops an embedded plan's work. On a cluster the client stops
/// waiting; the scheduler does not yet cancel the job (RELIABILITY.md).
async fn run_until_ctrl_c(ember: &EmberContext, sql: &str, format: Format) {
    let script = run_script(ember, sql, format);
    tokio::pin!(script);
    let result = tokio::select! {
        result = &mut script => result,
        interrupted = tokio::signal::ctrl_c() => match interrupted {
            Ok(()) => {
                eprintln!("cancelled");
                return;
            }
            // No signal handler: the statement runs to its end as before.
            Err(_) => script.await,
        },
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::{MetaCommand, is_complete, meta_command};

    #[test]
    fn backslash_commands() {
        assert_eq!(meta_command("\\?"), Some(MetaCommand::Help));
        assert!(
            matches!(meta_command("\\d"), Some(MetaCommand::Sql(s)) if s.contains("information_schema.tables"))
        );
        assert_eq!(
            meta_command("\\d lineitem;"),
            Some(MetaCommand::Sql("DESCRIBE lineitem".into()))
        );
        assert_eq!(
            meta_command("\\x"),
            Some(MetaCommand::Unknown("\\x".into()))
        );
        assert_eq!(meta_command("select 1;"), None);
    }

    #[test]
    fn statement_ends_with_semicolon_outside_strings_and_comments() {
        assert!(is_complete("select 1;"));
        assert!(is_complete("select 1;  \n"));
        assert!(!is_complete("select\n 1"));
        assert!(!is_complete("select ';"));
        assert!(is_complete("select ';';"));
        assert!(!is_complete("select 1 -- done;"));
        assert!(is_complete("select 1; -- done"));
    }
}
