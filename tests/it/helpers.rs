//! Running `vigil` as a child process and reading what it left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A `vigil` command with `args` after `--db URL`, quiet logging.
pub fn vigil(db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env_remove("RUST_LOG").arg("--db").arg(db).args(args);
    cmd
}

/// What a finished `vigil` run said.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "vigil failed: {self:#?}");
        &self.stdout
    }

    /// Asserts an operational error (exit 2) reported as one line on stderr; returns it.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        assert_eq!(self.code, 2, "expected an error exit: {self:#?}");
        let line = self.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "error is not one line: {line:?}");
        assert!(line.starts_with("vigil: error: "), "{line:?}");
        line
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `vigil --db URL args...` to completion, with stdin closed.
pub fn run(db: &str, args: &[&str]) -> Run {
    vigil(db, args)
        .stdin(Stdio::null())
        .output()
        .expect("starting vigil")
        .into()
}

/// Every file under `dir` with its bytes, to prove a failed command changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("reading a test directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("reading a test file");
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// The JSON objects of a `--json` listing.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
