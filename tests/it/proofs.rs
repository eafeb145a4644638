//! The log proving itself to outsiders: signed checkpoints that catch a
//! truncated or rebuilt log, proofs that verify with no database, the
//! gateway's checkpoints, and the bad input of each.

use std::path::{Path, PathBuf};

use audit_db::{Actor, AuditLog, DbUrl, NewEvent, OpenMode, Source};
use testkit::TestDb;

use crate::helpers::{json_lines, run, run_in, Run};

testkit::both_backends! {
    mod cases;
    a_checkpoint_catches_events_removed_from_the_end,
    a_checkpoint_catches_a_log_rebuilt_and_rehashed,
    a_proof_verifies_without_the_database,
    bad_checkpoints_keys_and_seqs_are_refused,
}

/// `vigil --db URL --data DIR ARGS`: the log key lives in the test's own directory.
fn keyed(db: &TestDb, args: &[&str]) -> Run {
    run_in(db.dir(), &[&["--db", db.url.as_str()], args].concat(), "")
}

fn notes(db: &TestDb, n: usize) {
    for i in 1..=n {
        run(&db.url, &["admin", "note", &format!("note {i}")]).ok();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A signed checkpoint of the log as it is now, in the test's directory.
fn checkpoint(db: &TestDb, name: &str) -> PathBuf {
    let file = db.dir().join(name);
    keyed(db, &["audit", "checkpoint", "-o", path_str(&file)]).ok();
    file
}

/// Removes every event after `keep`, and moves the head and the tree back
/// with them: a truncation the chain alone cannot see.
async fn truncate(db: &TestDb, keep: i64) {
    let zeros = db.bytes_sql(&[0; 32]);
    db.exec(&format!(
        "DELETE FROM audit_events WHERE seq > {keep}; \
         DELETE FROM audit_tree WHERE seq > {keep}; \
         UPDATE audit_head SET seq = {keep}, \
             hash = COALESCE((SELECT hash FROM audit_events WHERE seq = {keep}), {zeros});"
    ))
    .await;
}

/// Asserts `audit verify` passes without checkpoints and fails (exit 1,
/// naming `why`) with `cp`.
#[track_caller]
fn only_the_checkpoint_catches(db: &TestDb, cp: &Path, why: &str) {
    keyed(db, &["audit", "verify"]).ok();
    let caught = keyed(db, &["audit", "verify", "--checkpoint", path_str(cp)]);
    assert_eq!(caught.code, 1, "{caught:#?}");
    assert!(
        caught.stdout.starts_with("audit log BROKEN: checkpoint ") && caught.stdout.contains(why),
        "{caught:#?}"
    );
}

mod cases {
    use super::*;

    pub async fn a_checkpoint_catches_events_removed_from_the_end(db: &TestDb) {
        notes(db, 30);
        let cp = checkpoint(db, "30.checkpoint");
        let fine = keyed(db, &["audit", "verify", "--checkpoint", path_str(&cp)]);
        assert!(
            fine.ok().contains("extends checkpoint ") && fine.ok().contains("(30 events)"),
            "{fine:#?}"
        );
        db.allow_tampering().await;
        // The newest 1, 10, then all 30.
        for keep in [29, 20, 0] {
            truncate(db, keep).await;
            only_the_checkpoint_catches(
                db,
                &cp,
                &format!("of 30 events, the log holds {keep}: events were removed from its end"),
            );
        }
        // Proving against it is refused outright.
        let line = keyed(
            db,
            &[
                "audit",
                "prove",
                "--seq",
                "1",
                "--checkpoint",
                path_str(&cp),
            ],
        )
        .error_line()
        .to_owned();
        assert!(line.contains("events were removed from its end"), "{line}");
    }

    pub async fn a_checkpoint_catches_a_log_rebuilt_and_rehashed(db: &TestDb) {
        notes(db, 12);
        let cp = checkpoint(db, "12.checkpoint");
        let events = json_lines(run(&db.url, &["audit", "query", "--json"]).ok());
        db.wipe().await;
        // The same events again, but one note says something else: every
        // hash, the chain head and the tree are made anew and agree.
        let url: DbUrl = db.url.parse().unwrap();
        let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
        for e in &events {
            let mut text = e["payload"]["text"].as_str().unwrap().to_owned();
            if e["seq"] == 7 {
                text = "nothing to see".into();
            }
            let mut rebuilt = NewEvent::now(
                Actor::from_stored(e["actor"].as_str().unwrap().to_owned()),
                Source::from_stored(e["source"].as_str().unwrap().to_owned()),
                audit_db::EventKind::AdminNote(audit_db::event::AdminNote { text }),
            );
            rebuilt.id = e["id"].as_str().unwrap().parse().unwrap();
            rebuilt.occurred_at_us =
                audit_db::time_us::parse(e["occurred_at"].as_str().unwrap()).unwrap();
            log.append_one(rebuilt).await.unwrap();
        }
        log.close().await;
        only_the_checkpoint_catches(
            db,
            &cp,
            "the log's first 12 events are not the ones the checkpoint signed: they were rewritten",
        );
    }

    pub async fn a_proof_verifies_without_the_database(db: &TestDb) {
        notes(db, 6);
        // One body erased: its proof still holds, and says so.
        let url: DbUrl = db.url.parse().unwrap();
        let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
        log.erase(&[2], Actor::admin("dpo"), Source::cli("test"), "request 7")
            .await
            .unwrap();
        log.close().await;
        let key = keyed(db, &["audit", "key"]).ok().trim().to_owned();
        let proofs = tempfile::tempdir().unwrap();
        let proof = proofs.path().join("seq3.json");
        let erased = proofs.path().join("seq2.json");
        keyed(
            db,
            &["audit", "prove", "--seq", "3", "-o", path_str(&proof)],
        )
        .ok();
        keyed(
            db,
            &[
                "audit",
                "prove",
                "--seq",
                "2",
                "--size",
                "5",
                "-o",
                path_str(&erased),
            ],
        )
        .ok();
        db.wipe().await;
        std::fs::remove_file(db.dir().join(audit_db::checkpoint::KEY_FILE)).unwrap();

        let check = |file: &Path, key: &str| {
            run_in(
                proofs.path(),
                &["audit", "verify-proof", path_str(file), "--key", key],
                "",
            )
        };
        let held = check(&proof, &key);
        assert!(
            held.ok().starts_with("proof holds: seq 3 (admin.note, "),
            "{held:#?}"
        );
        assert!(
            held.ok().contains(r#"payload: {"text":"note 3"}"#),
            "{held:#?}"
        );
        assert!(held.ok().contains(" of 7 events, root "), "{held:#?}");
        let held = check(&erased, &key);
        assert!(held.ok().contains(" of 5 events, root "), "{held:#?}");
        assert!(held.ok().contains("payload: erased"), "{held:#?}");
        // The key as a file works as well as the text.
        let key_file = proofs.path().join("log.pub");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        check(&proof, path_str(&key_file)).ok();

        // A proof cut short, altered in its event or its checkpoint, or
        // checked with another log's key: one line each, exit 2.
        let text = std::fs::read_to_string(&proof).unwrap();
        let variant = |name: &str, content: &str| {
            let file = proofs.path().join(name);
            std::fs::write(&file, content).unwrap();
            file
        };
        let refused = |file: &Path, key: &str, why: &str| {
            let line = check(file, key).error_line().to_owned();
            assert!(line.contains(why), "{why:?} not in {line}");
        };
        refused(
            &variant("cut.json", &text[..text.len() / 2]),
            &key,
            "not a vigil event proof",
        );
        let forged = text.replace(r#"\"note 3\""#, r#"\"note 9\""#);
        assert_ne!(forged, text);
        refused(
            &variant("forged.json", &forged),
            &key,
            "is not in the checkpoint's tree of 7 events: the event or its proof was altered",
        );
        let resized = text.replace(r#""tree_size": 7"#, r#""tree_size": 6"#);
        refused(
            &variant("resized.json", &resized),
            &key,
            "the proof is for a tree of 6 events",
        );
        let cp_line = text
            .lines()
            .find(|l| l.contains(r#""checkpoint""#))
            .unwrap();
        let resigned = text.replace(cp_line, &cp_line.replacen("\\n7\\n", "\\n8\\n", 1));
        assert_ne!(resigned, text);
        refused(
            &variant("resigned.json", &resigned),
            &key,
            "does not match its text: it was altered",
        );
        let other = tempfile::tempdir().unwrap();
        let other_key = run_in(&other.path().join("d"), &["audit", "key"], "")
            .ok()
            .trim()
            .to_owned();
        refused(&proof, &other_key, "is not signed by key");
        refused(&proof, "not-a-key", "is not a usable key");
    }

    pub async fn bad_checkpoints_keys_and_seqs_are_refused(db: &TestDb) {
        notes(db, 4);
        let cp = checkpoint(db, "4.checkpoint");
        let text = std::fs::read_to_string(&cp).unwrap();
        let file = |name: &str, content: &str| {
            let path = db.dir().join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        let verify_refuses = |path: &Path, why: &str| {
            let r = keyed(db, &["audit", "verify", "--checkpoint", path_str(path)]);
            let line = r.error_line();
            assert!(line.contains(why), "{why:?} not in {line}");
        };
        verify_refuses(&file("junk", "hello\n"), "not a checkpoint");
        verify_refuses(
            &file("altered", &text.replacen("\n4\n", "\n3\n", 1)),
            "does not match its text",
        );
        verify_refuses(&db.dir().join("missing"), "reading ");
        // Another log's checkpoint (its own key, its own name).
        let other = tempfile::tempdir().unwrap();
        let other_db = format!("sqlite://{}", other.path().join("audit.db").display());
        let other_cp = other.path().join("cp");
        run(&other_db, &["admin", "note", "elsewhere"]).ok();
        run_in(
            other.path(),
            &[
                "--db",
                &other_db,
                "audit",
                "checkpoint",
                "-o",
                path_str(&other_cp),
            ],
            "",
        )
        .ok();
        verify_refuses(&other_cp, "is not signed by key");

        // --seq and --size beyond the log; the key file unreadable or not a key.
        let prove_refuses = |args: &[&str], why: &str| {
            let mut all = vec!["audit", "prove"];
            all.extend_from_slice(args);
            let r = keyed(db, &all);
            let line = r.error_line();
            assert!(line.contains(why), "{why:?} not in {line}");
        };
        prove_refuses(&["--seq", "5"], "no event has seq 5: the log's last is 4");
        prove_refuses(&["--seq", "0"], "no event has seq 0");
        prove_refuses(
            &["--seq", "1", "--size", "9"],
            "--size 9 is more than the log's 4 events",
        );
        let key = db.dir().join(audit_db::checkpoint::KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let line = keyed(db, &["audit", "checkpoint"]).error_line().to_owned();
        assert!(
            line.contains("is readable by other users (mode 0644)"),
            "{line}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&key, "PRIVATE+KEY+nonsense\n").unwrap();
        let line = keyed(db, &["audit", "key"]).error_line().to_owned();
        assert!(line.contains("is not a usable key"), "{line}");
    }
}

/// The gateway signs a checkpoint at start, whenever the log has grown at
/// each tick, and at stop; the log extends every one of them.
#[test]
fn the_gateway_keeps_checkpoints() {
    let data = tempfile::tempdir().unwrap();
    let gw = crate::helpers::start_gateway(data.path(), &["--checkpoint-every", "1s"]);
    let dir = data.path().join(audit_db::checkpoint::CHECKPOINT_DIR);
    let sizes = || -> Vec<u64> {
        let mut sizes: Vec<u64> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        name.strip_suffix(".checkpoint")?.parse().ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        sizes.sort_unstable();
        sizes
    };
    let wait_for = |what: &str, ready: &dyn Fn(&[u64]) -> bool| {
        // Bounded: 30 s at most, looking every 50 ms.
        for _ in 0..600 {
            if ready(&sizes()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no {what} in {}: {:?}", dir.display(), sizes());
    };
    wait_for("checkpoint at start", &|s| !s.is_empty());
    let first = sizes()[0];
    run_in(data.path(), &["admin", "note", "while it runs"], "").ok();
    wait_for("checkpoint after the note", &|s| {
        s.iter().any(|&n| n > first)
    });
    let (code, _) = gw.stop();
    assert_eq!(code, 0);
    let mut args = vec!["audit".to_owned(), "verify".to_owned()];
    for size in sizes() {
        args.push("--checkpoint".into());
        args.push(dir.join(format!("{size}.checkpoint")).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verified = run_in(data.path(), &args, "");
    assert!(
        verified.ok().contains("extends checkpoint "),
        "{verified:#?}"
    );
    // The last one covers every event, the gateway's stop included.
    let head = verified.ok().split("head seq ").nth(1).unwrap();
    let head: u64 = head.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(sizes().last(), Some(&head));
}
