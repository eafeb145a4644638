//! `kill -9` in the middle of sustained appends loses nothing acknowledged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use testkit::TestDb;

use crate::helpers::{json_lines, run, vigil};

/// Acknowledgements to see before pulling the plug.
const ACKS_BEFORE_KILL: usize = 3_000;
/// Upper bound on lines fed, so the feeder stops by itself whatever happens.
const MAX_LINES: usize = 2_000_000;

testkit::both_backends! {
    mod cases;
    acknowledged_events_survive_kill_9,
}

mod cases {
    use super::*;

    pub async fn acknowledged_events_survive_kill_9(db: &TestDb) {
        run(&db.url, &["admin", "note", "before the crash"]).ok();
        let mut child = vigil(&db.url, &["admin", "note", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting vigil");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let feeder = std::thread::spawn(move || {
            // Stops at the bound, or when the killed process's pipe breaks.
            for i in 0..MAX_LINES {
                if writeln!(stdin, "sustained note {i}").is_err() {
                    break;
                }
            }
        });

        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut acked: Vec<String> = Vec::new();
        for line in lines.by_ref() {
            acked.push(line.expect("reading acknowledgements"));
            if acked.len() == ACKS_BEFORE_KILL {
                break;
            }
        }
        assert_eq!(
            acked.len(),
            ACKS_BEFORE_KILL,
            "vigil stopped acknowledging early"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reaping vigil");
        // Acknowledgements already in the pipe count too; a line cut by the
        // kill is the only thing allowed not to parse.
        acked.extend(lines.map_while(Result::ok));
        feeder.join().expect("feeder thread");
        if acked
            .last()
            .is_some_and(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        {
            acked.pop();
        }
        let acked: Vec<(String, i64)> = json_lines(&acked.join("\n"))
            .into_iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["seq"].as_i64().unwrap(),
                )
            })
            .collect();

        let stored: HashMap<String, i64> =
            json_lines(run(&db.url, &["audit", "query", "--json"]).ok())
                .into_iter()
                .map(|e| {
                    (
                        e["id"].as_str().unwrap().to_owned(),
                        e["seq"].as_i64().unwrap(),
                    )
                })
                .collect();
        for (id, seq) in &acked {
            assert_eq!(
                stored.get(id),
                Some(seq),
                "acknowledged event {id} (seq {seq}) lost"
            );
        }
        let verified = run(&db.url, &["audit", "verify"]);
        let expected = format!(
            "audit log intact: {} events, head seq {} ",
            stored.len(),
            stored.len()
        );
        assert!(verified.ok().starts_with(&expected), "{verified:?}");

        let after = run(&db.url, &["admin", "note", "after the crash"]);
        assert!(after
            .ok()
            .starts_with(&format!("note appended: seq {} ", stored.len() + 1)));
    }
}
