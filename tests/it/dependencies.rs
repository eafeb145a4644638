//! The workspace's dependency rules (ARCHITECTURE.md, "Dependency rules"),
//! read from `cargo metadata` so that a forbidden edge fails the suite.

use std::collections::{BTreeMap, BTreeSet};

/// The normal (non-dev, non-build) dependency graph: package name → the
/// names of the packages it depends on.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    // This machine's platform only: other platforms' crates need not be here.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("running rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].to_owned();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// Everything `root` links, directly or not.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        for d in graph.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

const OURS: [&str; 12] = [
    "vigil",
    "audit-event",
    "audit-db",
    "protocol",
    "gateway",
    "session-core",
    "recorder",
    "converter",
    "reporter",
    "webhook",
    "retention",
    "web",
];

#[test]
fn dependencies_point_one_way() {
    let graph = graph();
    let ours_under = |krate: &str| -> BTreeSet<String> {
        reach(&graph, krate)
            .into_iter()
            .filter(|d| OURS.contains(&d.as_str()) || d == "testkit")
            .collect()
    };
    let only = |krate: &str, allowed: &[&str]| {
        let found = ours_under(krate);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        assert!(
            found.is_subset(&allowed),
            "{krate} depends on {:?}, beyond {allowed:?}",
            found.difference(&allowed).collect::<Vec<_>>()
        );
    };
    only("audit-event", &[]);
    only("audit-db", &["audit-event"]);
    only("recorder", &[]);
    only("protocol", &["audit-event"]);
    only("session-core", &["audit-event", "protocol", "recorder"]);
    only("gateway", &["audit-event", "audit-db", "protocol"]);
    only("converter", &["recorder"]);
    only("reporter", &["audit-event", "audit-db", "recorder"]);
    only(
        "webhook",
        &["audit-event", "audit-db", "reporter", "recorder"],
    );
    only("retention", &["audit-event", "audit-db"]);
    // The portal reuses the gateway's login rules and account administration
    // (`gateway::login`, `gateway::admin`), not its engine; and the webhook
    // and retention crates' administration, as `vigil admin` does.
    only(
        "web",
        &[
            "audit-event",
            "audit-db",
            "protocol",
            "gateway",
            "recorder",
            "reporter",
            "converter",
            "webhook",
            "retention",
        ],
    );
    only("testkit", &[]);
    for krate in OURS.iter().filter(|k| **k != "vigil") {
        assert!(
            !reach(&graph, krate).contains("vigil"),
            "{krate} depends on the binary"
        );
    }

    let forbidden = |krate: &str, what: &str, names: &[&str]| {
        let all = reach(&graph, krate);
        let found: Vec<_> = names.iter().filter(|n| all.contains(**n)).collect();
        assert!(found.is_empty(), "{krate} links {what}: {found:?}");
    };
    const DATABASES: [&str; 4] = ["sqlx", "sqlx-core", "rusqlite", "libsqlite3-sys"];
    forbidden(
        "session-core",
        "a database driver or password hashing (the applet is built from it)",
        &[&DATABASES[..], &["argon2", "password-hash"]].concat(),
    );
    forbidden("protocol", "a database driver", &DATABASES);
    forbidden("audit-event", "a database driver", &DATABASES);
    forbidden(
        "gateway",
        "X11, the recorder or an HTTP client (webhooks are delivered beside it)",
        &["x11rb", "recorder", "zstd", "reqwest"],
    );
    forbidden(
        "recorder",
        "a network or database crate",
        &[
            &DATABASES[..],
            &["tokio", "rustls", "hyper", "axum", "reqwest"],
        ]
        .concat(),
    );
}
