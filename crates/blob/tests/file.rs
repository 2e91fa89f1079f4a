//! The conformance suite on `file://` (a fresh temporary directory per check), and what only a
//! local directory does.

use assay_blob::{BlobError, BlobUrl, Blobs};
use bytes::Bytes;
use std::ops::Deref;

/// A store in a fresh temporary directory that lives as long as the fixture.
struct Fixture {
    blobs: Blobs,
    dir: tempfile::TempDir,
}

impl Deref for Fixture {
    type Target = Blobs;
    fn deref(&self) -> &Blobs {
        &self.blobs
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

async fn fresh() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = BlobUrl::file(&dir.path().join("blobs")).expect("url");
    let blobs = Blobs::open(&url, &no_env).await.expect("open");
    Fixture { blobs, dir }
}

assay_blob::conformance_tests!(fresh);

#[tokio::test]
async fn objects_are_files_under_the_directory_and_survive_reopening() {
    let fx = fresh().await;
    fx.put("outputs/e1/stdout", Bytes::from_static(b"out"))
        .await
        .expect("put");
    let file = fx.dir.path().join("blobs/outputs/e1/stdout");
    assert_eq!(std::fs::read(&file).expect("the file"), b"out");
    assert_eq!(
        fx.url().local_dir(),
        Some(fx.dir.path().join("blobs").as_path())
    );

    let again = Blobs::open(fx.url(), &no_env).await.expect("reopen");
    assert_eq!(
        again.read_all("outputs/e1/stdout").await.expect("read"),
        "out"
    );
}

#[tokio::test]
async fn an_aborted_writer_leaves_no_file_behind() {
    let fx = fresh().await;
    let mut w = fx.writer("x/partial").await.expect("writer");
    w.write(&vec![7u8; assay_blob::PART_SIZE + 1])
        .await
        .expect("write");
    w.abort().await.expect("abort");
    let leftovers: Vec<_> = std::fs::read_dir(fx.dir.path().join("blobs/x"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_directory_that_cannot_be_created_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    let url = BlobUrl::file(&file.join("sub")).expect("url");
    let e = Blobs::open(&url, &no_env)
        .await
        .expect_err("open under a file");
    assert!(matches!(e, BlobError::Backend(_)), "{e}");
    assert!(e.to_string().contains("a-file"), "{e}");
}

#[test]
fn whole_suite_in_one_test() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(assay_blob::conformance::run_all(fresh));
}
