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

/// Runs the prompt until `\q`, Ctrl-D, or end of input.
pub async fn run(ember: &EmberContext, format: Format) -> Result<()> {
    let mut editor = DefaultEditor::new()
        .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "ember {} ({}). End statements with ';', \\q quits.",
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
                buffer.push_str(&line);
                buffer.push('\n');
                if is_complete(&buffer) {
                    let _ = editor.add_history_entry(buffer.trim_end());
                    if let Err(e) = run_script(ember, &buffer, format).await {
                        eprintln!("error: {}", one_line(&e));
                    }
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

#[cfg(test)]
mod tests {
    use super::is_complete;

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
