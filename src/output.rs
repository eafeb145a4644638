//! What the interactive programs print: a line of text for people, or one
//! JSON object per line (`--json`) for scripts.

use std::io::Write;

/// Where console and applet report what happens.
#[derive(Clone, Debug)]
pub struct Out {
    pub json: bool,
    /// Every line also goes here, as `{"text": TEXT, "line": LINE}` in
    /// JSON: what is printed for people, and what `--json` prints (the
    /// console's page shows them).
    pub tee: Option<tokio::sync::broadcast::Sender<String>>,
}

impl Out {
    /// Prints `line` (a `session_core::lines` value, `{"event": NAME, ...}`)
    /// with `--json`, else `text`.
    pub fn emit(&self, line: &impl serde::Serialize, text: impl std::fmt::Display) {
        let json = || {
            serde_json::to_string(line)
                .expect("a line is a plain struct (no maps with non-string keys): it serialises")
        };
        let mut out = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(out, "{}", json())
        } else {
            writeln!(out, "{text}")
        };
        let _ = out.flush();
        if let Some(tee) = &self.tee {
            let both = format!(
                r#"{{"text":{},"line":{}}}"#,
                serde_json::Value::String(text.to_string()),
                json()
            );
            // Nobody listening (no page open) is fine.
            let _ = tee.send(both);
        }
    }
}

/// Standard input as lines, read on a task of its own; the channel closes at end of input.
pub fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    rx
}
