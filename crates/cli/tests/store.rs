//! `--store URL` (or `ASSAY_STORE`) on every command that opens the store itself: `serve`,
//! `worker`, `admin create-key`, `audit verify`, `audit export`. A bad URL is refused before
//! anything starts, an unreachable PostgreSQL is a clear error that never shows the password,
//! and a SQLite store outside the data folder works (the data folder keeps the admin key).

mod common;

use common::{assay_cli, serve, stderr, stdout};
use std::process::Command;

/// The commands that open a store, each with `--store URL` appended.
fn every_store_command(url: &str, data: &str) -> Vec<Vec<String>> {
    [
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--slots",
            "0",
            "--data",
            data,
        ][..],
        &["worker", "--slots", "1", "--data", data],
        &["admin", "create-key", "--data", data],
        &["audit", "verify", "--data", data],
        &["audit", "export"],
    ]
    .iter()
    .map(|args| {
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.extend(["--store".to_string(), url.to_string()]);
        v
    })
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assay_cli(None, &args)
}

#[test]
fn a_bad_store_url_is_a_clear_error_and_postgres_passwords_are_hidden() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    // Each error says what was expected; a password is never shown.
    let bad = [
        "mysql://u@h/db",
        "assay.db",
        "sqlite://",
        "postgres://host-without-db",
    ];
    let postgres = "postgres://assay:s3cret@db.internal:5432/assay";
    // An unreachable PostgreSQL is a clear error naming the store, its password hidden.
    for args in every_store_command(postgres, d) {
        let out = run(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains("postgres://assay:***@db.internal:5432/assay") && !err.contains("s3cret"),
            "{args:?}: {err}"
        );
    }
    for (url, why) in bad.map(|url| (url, "--store")) {
        for args in every_store_command(url, d) {
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
            let err = stderr(&out);
            assert!(
                err.contains(why) && err.contains("sqlite://PATH") && !err.contains("s3cret"),
                "{args:?}: {err}"
            );
        }
    }
    // The environment variable is checked like the flag.
    let out = Command::new(env!("CARGO_BIN_EXE_assay"))
        .args(["audit", "verify", "--data", d])
        .env("ASSAY_STORE", "mysql://u@h/db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("unknown scheme"), "{out:?}");
    // Nothing was created anywhere.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_outside_the_data_folder() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let db = elsewhere.path().join("nested/assay-store.db");
    let url = format!("sqlite://{}", db.display());
    let s = serve(data.path(), &["--slots", "0", "--store", &url]);
    assert!(db.is_file(), "the database is where --store says");
    assert!(
        !data.path().join("assay.db").exists(),
        "and not in the data folder"
    );
    assert!(data.path().join("admin.key").is_file(), "the key is");

    // The offline commands reach the same store by the same URL.
    let out = assay_cli(None, &["admin", "create-key", "--store", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let created: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let key = created["key"].as_str().unwrap();
    let out = assay_cli(
        Some((&s, key)),
        &[
            "keys", "create", "--tenant", "t", "--role", "viewer", "--name", "n",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the recovery key works: {out:?}"
    );
    let out = assay_cli(None, &["audit", "verify", "--store", &url]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("audit log OK"), "{out:?}");
    let out = assay_cli(None, &["audit", "export", "--store", &url]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("\"key.create\""), "{out:?}");
}
