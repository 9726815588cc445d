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
    fn folds_lines_and_strips_wrappers() {
        let e =
            DataFusionError::External(Box::new(DataFusionError::Execution("bad\n  thing".into())));
        assert_eq!(one_line(&e), "bad thing");
        let e = DataFusionError::Plan("table 'x' not found".into());
        assert_eq!(one_line(&e), "Error during planning: table 'x' not found");
    }
}
