//! A bundle whose events fill several of the reader's buffers: every line,
//! including those cut by a buffer's end, is read back whole and in order.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use audit_db::checkpoint::LogKey;
use audit_db::event::AdminNote;
use audit_db::{Actor, AuditLog, DbUrl, EventKind, Filter, NewEvent, OpenMode, Source};
use retention::bundle::{self, Subject, Writer};
use retention::policy::RecordClass;

#[tokio::test]
async fn a_bundle_larger_than_the_read_buffer_reads_back_whole() {
    let db = testkit::TestDb::sqlite();
    let url: DbUrl = db.url.parse().unwrap();
    let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
    // ~450 bytes a line, 2.5 MiB in all: the 1 MiB buffer cuts lines.
    let n = 6_000;
    let notes = (0..n).map(|i| {
        let text = format!("note {i:05} {}", "x".repeat(i % 400));
        NewEvent::now(
            Actor::admin("ann@example.com"),
            Source::cli("test"),
            EventKind::AdminNote(AdminNote { text }),
        )
    });
    log.append(notes.collect()).await.unwrap();
    let events = log
        .store()
        .page(&Filter::default(), 0, n as i64)
        .await
        .unwrap();
    assert_eq!(events.len(), n);
    let (key, _) = LogKey::generate("vigil/test/lines").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::create(dir.path(), "lines").unwrap();
    let subject = Subject {
        class: RecordClass::SecurityEvents,
        group: None,
        technician: Some(Arc::from("ann@example.com")),
        age_from_us: 0,
    };
    for event in &events {
        let subject = Subject {
            age_from_us: event.occurred_at_us,
            ..subject.clone()
        };
        writer.push(event, &subject).unwrap();
    }
    writer.finish(log.store(), &key, 1).await.unwrap();
    let (data, manifest) = bundle::paths(dir.path(), "lines");
    assert!(std::fs::metadata(&data).unwrap().len() > 0);
    bundle::verify(&manifest, Some(key.public())).unwrap();
    let (_, read) = bundle::read_events(&manifest).unwrap();
    assert_eq!(read.len(), n);
    for (original, (back, subject)) in events.iter().zip(&read) {
        assert_eq!(back, original);
        assert_eq!(subject.age_from_us, original.occurred_at_us);
    }
    log.close().await;
}
