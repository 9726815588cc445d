//! Turning errors into the one line a user reads.

use datafusion::common::DataFusionError;

/// The error as one line: the innermost useful message, without DataFusion's and
/// Ballista's wrapping, line breaks folded.
pub fn one_line(error: &DataFusionError) -> String {
    let text = error.to_string();
    let text = strip_wrappers(&text);
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        line = "unknown error".into();
    }
    line
}

/// Whether the error is a write to a pipe whose reader has gone (`ember sql ... |
/// head`): the reader asked for no more, so there is nothing to report.
pub fn is_broken_pipe(error: &DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError;
    use std::io::ErrorKind::BrokenPipe;
    match error {
        DataFusionError::ArrowError(arrow, _) => {
            matches!(arrow.as_ref(), ArrowError::IoError(_, io) if io.kind() == BrokenPipe)
        }
        DataFusionError::IoError(io) => io.kind() == BrokenPipe,
        DataFusionError::External(inner) => inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe),
        DataFusionError::Context(_, inner) => is_broken_pipe(inner),
        _ => false,
    }
}

/// Prefixes that say where an error passed through rather than what went wrong.
const WRAPPERS: [&str; 4] = [
    "External error: ",
    "Execution error: ",
    "Internal error: ",
    "Shared error: ",
];

fn strip_wrappers(mut text: &str) -> &str {
    loop {
        let before = text;
        for prefix in WRAPPERS {
            if let Some(rest) = text.strip_prefix(prefix) {
                text = rest;
            }
        }
        if before == text {
            return text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipes_are_recognised_through_wrappers() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&DataFusionError::IoError(pipe())));
        assert!(is_broken_pipe(&DataFusionError::External(Box::new(pipe()))));
        let arrow = datafusion::arrow::error::ArrowError::IoError("x".into(), pipe());
        assert!(is_broken_pipe(&DataFusionError::ArrowError(
            Box::new(arrow),
            None
        )));
        assert!(!is_broken_pipe(&DataFusionError::Plan("no".into())));
    }

    #[test]
    fn folds_lines_and_strips_wrappers() {
        let e =
            DataFusionError::External(Box::new(DataFusionError::Execution("bad\n  thing".into())));
        assert_eq!(one_line(&e), "bad thing");
        let e = DataFusionError::Plan("table 'x' not found".into());
        assert_eq!(one_line(&e), "Error during planning: table 'x' not found");
    }
}
