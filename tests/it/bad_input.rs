//! Unusable databases are refused with one line naming the cause, exit 2,
//! and are left exactly as they were.

use testkit::TestDb;

use crate::helpers::{run, snapshot};

/// Every command kind: a reader, a lister and a writer.
const COMMANDS: [&[&str]; 3] = [
    &["audit", "verify"],
    &["audit", "query"],
    &["admin", "note", "x"],
];

#[test]
fn an_unreachable_postgres_is_named() {
    for args in COMMANDS {
        let out = run("postgres://vigil:secret@127.0.0.1:1/audit", args);
        let line = out.error_line();
        assert!(
            line.contains("cannot connect to postgres://vigil:***@127.0.0.1:1/audit"),
            "{line}"
        );
        assert!(!line.contains("secret"), "{line}");
    }
}

#[test]
fn malformed_db_urls_are_named() {
    for url in [
        "mysql://db/audit",
        "sqlite://",
        "audit.db",
        "postgres://db:port/audit",
    ] {
        let line = run(url, &["audit", "verify"]).error_line().to_owned();
        assert!(
            line.contains(&format!("invalid database URL {url:?}")),
            "{line}"
        );
    }
}

#[test]
fn a_missing_database_is_named_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/audit.db", dir.path().display());
    for args in &COMMANDS[..2] {
        let line = run(&url, args).error_line().to_owned();
        assert!(line.contains("no audit database at"), "{line}");
    }
    assert!(snapshot(dir.path()).is_empty());
}

/// Runs every command against the SQLite file `db`, expecting `cause` and no change on disk.
#[track_caller]
fn refused_untouched(db: &TestDb, cause: &str) {
    let before = snapshot(db.dir());
    for args in COMMANDS {
        let line = run(&db.url, args).error_line().to_owned();
        assert!(line.contains(cause), "{args:?}: {line}");
        let after = snapshot(db.dir());
        let differ: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        assert!(differ.is_empty(), "{args:?} changed {differ:?}");
    }
}

#[test]
fn a_corrupt_sqlite_file_is_named_and_left_alone() {
    let db = TestDb::sqlite();
    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(db.dir().join("audit.db"), garbage).unwrap();
    refused_untouched(&db, "is not a readable SQLite database");
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_named_and_left_alone() {
    let db = TestDb::sqlite();
    std::fs::File::create(db.dir().join("audit.db")).unwrap();
    db.exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        .await;
    refused_untouched(&db, "is a SQLite database but not a Vigil audit log");
}

#[tokio::test]
async fn a_newer_sqlite_schema_is_named_and_left_alone() {
    let db = TestDb::sqlite();
    run(&db.url, &["admin", "note", "written by this version"]).ok();
    db.stamp_newer_schema().await;
    refused_untouched(
        &db,
        "database schema version 99990101000000 is newer than this vigil supports",
    );
}

#[tokio::test]
async fn a_newer_postgres_schema_is_named_and_left_alone() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    run(&db.url, &["admin", "note", "written by this version"]).ok();
    db.stamp_newer_schema().await;
    for args in COMMANDS {
        let line = run(&db.url, args).error_line().to_owned();
        assert!(line.contains("is newer than this vigil supports"), "{line}");
    }
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM audit_events").await, 1);
    db.cleanup().await;
}

#[test]
fn an_emptied_log_is_an_error_and_reading_it_creates_nothing() {
    let db = TestDb::sqlite();
    run(&db.url, &["admin", "note", "before"]).ok();
    // `: > audit.db`, as an attacker would.
    std::fs::File::create(db.dir().join("audit.db")).unwrap();
    for args in &COMMANDS[..2] {
        let line = run(&db.url, args).error_line().to_owned();
        assert!(line.contains("is empty: it holds no audit log"), "{line}");
    }
    let left = snapshot(db.dir());
    assert_eq!(
        left.get(&db.dir().join("audit.db")).map(Vec::len),
        Some(0),
        "no schema was written into the emptied file: {:?}",
        left.keys().collect::<Vec<_>>()
    );
}

/// A read changes no byte of a log. (The first read after a writer that
/// exited without closing may checkpoint its WAL into the file and remove
/// the -wal and -shm files: SQLite's housekeeping, the content unchanged.
/// The log is settled by one read before the snapshot.)
#[test]
fn reading_a_log_changes_nothing_on_disk() {
    let db = TestDb::sqlite();
    run(&db.url, &["admin", "note", "a note"]).ok();
    run(&db.url, &["audit", "verify"]).ok();
    let before = snapshot(db.dir());
    run(&db.url, &["audit", "verify"]).ok();
    run(&db.url, &["audit", "query", "--json"]).ok();
    assert!(before == snapshot(db.dir()), "a read changed the files");
}

/// A copy of tests/data/audit-before-format-2.db in a directory of its own.
fn log_before_format_2() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/audit-before-format-2.db"
        ),
        &path,
    )
    .unwrap();
    (dir, path)
}

/// A log of an older format that does not verify is not converted to
/// format 3 (a new chain over it would hide the break): the writer that
/// would convert it stops with the break named, and leaves every row as it
/// was, so `audit verify` still names it.
#[test]
fn a_broken_log_of_an_older_format_is_not_converted() {
    let (_dir, path) = log_before_format_2();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_events_no_update; \
         UPDATE audit_events SET payload = '{\"text\":\"forged\"}' WHERE seq = 5;",
    )
    .unwrap();
    conn.close().unwrap();
    let url = format!("sqlite://{}", path.display());
    let line = run(&url, &["admin", "note", "x"]).error_line().to_owned();
    assert!(
        line.contains("the log does not verify (seq 5 was modified: its content does not match its hash), so it was not converted"),
        "{line}"
    );
    let verified = run(&url, &["audit", "verify"]);
    assert_eq!(verified.code, 1, "{verified:#?}");
    assert!(
        verified
            .stdout
            .starts_with("audit log BROKEN at seq 5: seq 5 was modified"),
        "{verified:#?}"
    );
    let formats = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE format < 3",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(formats, 11, "every row as it was");
}

/// A log written before encoding format 2 (tests/data: four admin changes,
/// a note, five failed logins that locked bob): read-only commands may not
/// upgrade it and say so; the first command that writes does, and every old
/// row still verifies beside the new ones.
#[test]
fn a_log_from_before_format_2_is_upgraded_by_a_writer_and_still_verifies() {
    let (_dir, path) = log_before_format_2();
    let url = format!("sqlite://{}", path.display());
    // Readable by others (as a checkout usually leaves it): refused until it is not.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = run(&url, &["admin", "note", "x"]).error_line().to_owned();
    assert!(
        line.contains("readable by other users (mode 0644)"),
        "{line}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let line = run(&url, &["audit", "verify"]).error_line().to_owned();
    assert!(line.contains("older than this vigil's"), "{line}");
    run(&url, &["admin", "note", "after the upgrade"]).ok();
    let verified = run(&url, &["audit", "verify"]).ok().to_owned();
    assert!(verified.contains("intact: 12 events"), "{verified}");
    // Every old row was checked, then converted to format 3 (erasable bodies).
    let converted = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE format = 3 AND body_salt IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(converted, 12);
    let users = crate::helpers::json_lines(run(&url, &["admin", "user", "list", "--json"]).ok());
    let bob = users
        .iter()
        .find(|u| u["email"] == "bob@example.com")
        .unwrap();
    assert_eq!(
        bob["failed_logins"], 5,
        "failure counts move to login_attempts"
    );
}
