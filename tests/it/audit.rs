//! `vigil admin note`, `audit query` and `audit verify` against both stores,
//! including logs tampered with directly in the database.

use std::process::Stdio;

use testkit::TestDb;

use crate::helpers::{json_lines, run, vigil};

testkit::both_backends! {
    mod cases;
    notes_are_listed_and_verified,
    query_filters_narrow_the_listing,
    an_anchor_is_checked,
    a_modified_event_fails_verification,
    a_deleted_event_fails_verification,
    an_inserted_event_fails_verification,
    swapped_events_fail_verification,
    thirty_two_processes_append_at_once,
}

mod cases {
    use super::*;

    pub async fn notes_are_listed_and_verified(db: &TestDb) {
        let out = run(
            &db.url,
            &[
                "admin",
                "note",
                "investigation opened",
                "--as",
                "ann@example.com",
            ],
        );
        assert!(out.ok().starts_with("note appended: seq 1 "), "{out:?}");
        run(&db.url, &["admin", "note", "second look"]).ok();

        let listed = json_lines(run(&db.url, &["audit", "query", "--json"]).ok());
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["type"], "admin.note");
        assert_eq!(listed[0]["actor"], "admin:ann@example.com");
        assert_eq!(listed[0]["payload"]["text"], "investigation opened");
        assert_eq!(listed[1]["seq"], 2);

        let table = run(&db.url, &["audit", "query"]);
        assert!(table.ok().contains("investigation opened"), "{table:?}");

        let verified = run(&db.url, &["audit", "verify"]);
        let head = listed[1]["hash"].as_str().unwrap();
        assert_eq!(
            verified.ok().trim(),
            format!("audit log intact: 2 events, head seq 2 hash {head}")
        );
        let v: serde_json::Value =
            serde_json::from_str(run(&db.url, &["audit", "verify", "--json"]).ok()).unwrap();
        assert_eq!(
            (v["intact"].as_bool(), v["events"].as_u64()),
            (Some(true), Some(2))
        );
    }

    pub async fn query_filters_narrow_the_listing(db: &TestDb) {
        run(&db.url, &["admin", "note", "one", "--as", "ann"]).ok();
        run(&db.url, &["admin", "note", "two", "--as", "bob"]).ok();
        let count = |args: &[&str]| {
            let mut all = vec!["audit", "query", "--json"];
            all.extend_from_slice(args);
            json_lines(run(&db.url, &all).ok()).len()
        };
        assert_eq!(count(&["--actor", "admin:bob"]), 1);
        assert_eq!(count(&["--type", "admin.note", "--since", "2000-01-01"]), 2);
        assert_eq!(count(&["--until", "2000-01-01T00:00:00Z"]), 0);
        assert_eq!(
            count(&["--session", "6f1c2b1e-1111-4222-8333-944455556666"]),
            0
        );
        assert_eq!(count(&["--type", "login.failed"]), 0);

        let bad_type = run(&db.url, &["audit", "query", "--type", "login.oops"]);
        assert_eq!(bad_type.code, 2);
        assert!(
            bad_type
                .stderr
                .contains("unknown event type \"login.oops\""),
            "{bad_type:?}"
        );
        let bad_time = run(&db.url, &["audit", "query", "--since", "last tuesday"]);
        assert_eq!(bad_time.code, 2);
        assert!(bad_time.stderr.contains("is not a time"), "{bad_time:?}");
    }

    pub async fn an_anchor_is_checked(db: &TestDb) {
        run(&db.url, &["admin", "note", "a"]).ok();
        let first = json_lines(run(&db.url, &["audit", "query", "--json"]).ok()).remove(0);
        run(&db.url, &["admin", "note", "b"]).ok();
        let anchor = format!("1:{}", first["hash"].as_str().unwrap());
        run(&db.url, &["audit", "verify", "--anchor", &anchor]).ok();
        let wrong = format!("1:{}", "ab".repeat(32));
        let out = run(&db.url, &["audit", "verify", "--anchor", &wrong]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stdout.contains("BROKEN at seq 1"), "{out:?}");
    }

    /// Five notes, with the append-only triggers dropped as a tamperer would.
    async fn five_notes_unprotected(db: &TestDb) {
        for i in 1..=5 {
            run(&db.url, &["admin", "note", &format!("note {i}")]).ok();
        }
        db.allow_tampering().await;
    }

    /// `vigil audit verify` must exit 1 naming `seq` and `how` the log broke.
    #[track_caller]
    fn assert_broken(db: &TestDb, seq: i64, how: &str) {
        let out = run(&db.url, &["audit", "verify"]);
        assert_eq!(out.code, 1, "{out:?}");
        let line = out.stdout.trim();
        assert!(
            line.starts_with(&format!("audit log BROKEN at seq {seq}: ")),
            "{line}"
        );
        assert!(line.contains(how), "{line}");
    }

    pub async fn a_modified_event_fails_verification(db: &TestDb) {
        five_notes_unprotected(db).await;
        db.exec(r#"UPDATE audit_events SET payload = '{"text":"nothing to see"}' WHERE seq = 3"#)
            .await;
        assert_broken(db, 3, "was modified");
    }

    pub async fn a_deleted_event_fails_verification(db: &TestDb) {
        five_notes_unprotected(db).await;
        db.exec("DELETE FROM audit_events WHERE seq = 2").await;
        assert_broken(db, 2, "is missing: an event was deleted");
    }

    pub async fn an_inserted_event_fails_verification(db: &TestDb) {
        five_notes_unprotected(db).await;
        db.insert_copy(1, 4).await;
        assert_broken(db, 4, "seq 4");
    }

    pub async fn swapped_events_fail_verification(db: &TestDb) {
        five_notes_unprotected(db).await;
        db.swap_events(2, 5).await;
        assert_broken(db, 2, "inserted, removed or reordered");
    }

    pub async fn thirty_two_processes_append_at_once(db: &TestDb) {
        let children: Vec<_> = (0..32)
            .map(|i| {
                vigil(&db.url, &["admin", "note", &format!("from process {i}")])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("starting vigil")
            })
            .collect();
        for child in children {
            let out: crate::helpers::Run =
                child.wait_with_output().expect("waiting for vigil").into();
            out.ok();
        }
        let out = run(&db.url, &["audit", "verify"]);
        assert!(
            out.ok().starts_with("audit log intact: 32 events"),
            "{out:?}"
        );
    }
}
