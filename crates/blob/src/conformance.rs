//! The conformance suite every backend of [`Blobs`] passes.
//!
//! Every check is a public async function taking a FRESH, empty store. A check panics with a
//! message naming what broke. Two ways to run it from a backend's tests:
//!
//! ```text
//! // One #[tokio::test] per check (needs `tokio` with `macros` and `rt-multi-thread`). The
//! // function returns anything that derefs to `Blobs` (e.g. a struct that also keeps a temp
//! // directory or an `S3Server` alive).
//! async fn fresh() -> MyFixture { ... }
//! assay_blob::conformance_tests!(fresh);
//!
//! // Or everything in one test:
//! assay_blob::conformance::run_all(|| async { ... }).await;
//! ```
//!
//! Semantics pinned here beyond the method docs: see the `blobs` module's list (whole-segment
//! prefixes, range rules) and [`BlobWriter`](crate::BlobWriter) (visible only after `finish`).

use crate::blobs::Blobs;
use crate::error::BlobError;
use crate::writer::{BlobInfo, PART_SIZE};
use bytes::Bytes;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::ops::{Deref, Range};

/// Runs every check, each on a fresh store from `make`. Panics at the first failure; the panic
/// message names the check.
pub async fn run_all<B, F, Fut>(make: F)
where
    B: Deref<Target = Blobs>,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    crate::conformance_tests!(@run make);
}

/// Expands to one `#[tokio::test]` per conformance check. The argument is the path of an async
/// function (no arguments) returning a value that derefs to the [`Blobs`] under test.
#[macro_export]
macro_rules! conformance_tests {
    (@run $make:ident) => {
        $crate::conformance_tests!(@each [run $make]);
    };
    (@one [test $fixture:path] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let fixture = $fixture().await;
            $crate::conformance::$name(&*fixture).await;
        }
    };
    (@one [run $make:ident] $name:ident) => {{
        let fixture = $make().await;
        eprintln!("conformance check {} ...", stringify!($name));
        $crate::conformance::$name(&*fixture).await;
    }};
    (@each $how:tt) => {
        $crate::conformance_tests!(@list $how
            put_and_read_round_trip
            every_allowed_character_round_trips
            read_of_an_absent_key_is_not_found
            streaming_writer_round_trips_a_large_object
            writer_handles_empty_small_and_exact_part_sizes
            object_is_invisible_until_finish_and_after_abort
            ranges
            put_if_absent_keeps_the_first
            delete_is_idempotent
            delete_prefix_deletes_only_under_the_prefix
            list_is_sorted_with_sizes
            invalid_keys_are_refused_by_every_method
            concurrent_writers_to_different_keys
        );
    };
    (@list [test $fixture:path] $($name:ident)*) => {
        $( $crate::conformance_tests!(@one [test $fixture] $name); )*
    };
    (@list [run $make:ident] $($name:ident)*) => {
        $( $crate::conformance_tests!(@one [run $make] $name); )*
    };
    ($fixture:path) => {
        $crate::conformance_tests!(@each [test $fixture]);
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `len` pseudo-random bytes (xorshift, so the same `seed` gives the same bytes); not UTF-8.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads `range` of `key`: the reported size and range, and the bytes.
pub async fn read_range(
    blobs: &Blobs,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<(u64, Range<u64>, Vec<u8>), BlobError> {
    let read = blobs.read(key, range).await?;
    let chunks: Vec<Bytes> = read.stream.try_collect().await?;
    Ok((read.size, read.range, chunks.concat()))
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).expect("fits in u64")
}

/// Asserts two large byte strings are equal without printing them.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

async fn keys(blobs: &Blobs, prefix: &str) -> Vec<String> {
    let listed = blobs.list(prefix).await.expect("list");
    listed.into_iter().map(|(k, _)| k).collect()
}

// ---------------------------------------------------------------------------------------------
// Checks

/// `put` then `read`/`read_all`/`size`, for text, the empty object and bytes that are not
/// UTF-8; a second `put` replaces the object.
pub async fn put_and_read_round_trip(blobs: &Blobs) {
    let info = blobs
        .put("a/text", Bytes::from_static(b"hello"))
        .await
        .expect("put");
    assert_eq!(
        info,
        BlobInfo {
            size: 5,
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()
        }
    );
    assert_eq!(blobs.read_all("a/text").await.expect("read_all"), "hello");
    let (size, range, bytes) = read_range(blobs, "a/text", None).await.expect("read");
    assert_eq!((size, range, bytes.as_slice()), (5, 0..5, &b"hello"[..]));
    assert_eq!(blobs.size("a/text").await.expect("size"), Some(5));

    let info = blobs.put("a/empty", Bytes::new()).await.expect("put empty");
    assert_eq!(info, BlobInfo::of(b""));
    assert_eq!(blobs.size("a/empty").await.expect("size"), Some(0));
    assert!(
        blobs
            .read_all("a/empty")
            .await
            .expect("read empty")
            .is_empty()
    );
    let (size, range, bytes) = read_range(blobs, "a/empty", None).await.expect("read");
    assert_eq!((size, range, bytes.len()), (0, 0..0, 0));

    let mut binary: Vec<u8> = (0..=255u8).rev().collect();
    binary.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80]);
    binary.extend(data(10_000, 1));
    assert!(std::str::from_utf8(&binary).is_err());
    let info = blobs
        .put("a/binary.bin", Bytes::from(binary.clone()))
        .await
        .expect("put binary");
    assert_eq!(info.sha256, sha256_hex(&binary));
    let got = blobs.read_all("a/binary.bin").await.expect("read binary");
    assert_same(&got, &binary, "binary round trip");

    blobs
        .put("a/text", Bytes::from_static(b"bye"))
        .await
        .expect("overwrite");
    assert_eq!(blobs.read_all("a/text").await.expect("read"), "bye");
}

/// A key using every allowed punctuation character comes back from `read` and `list` as given.
pub async fn every_allowed_character_round_trips(blobs: &Blobs) {
    let key = "chars/a-b_c.d=e+f@g~h/UPPER.lower.0123456789/.dot";
    blobs.put(key, Bytes::from_static(b"x")).await.expect("put");
    assert_eq!(blobs.read_all(key).await.expect("read"), "x");
    assert_eq!(
        blobs.list("chars").await.expect("list"),
        vec![(key.to_string(), 1)]
    );
    assert_eq!(
        blobs
            .delete_prefix("chars/a-b_c.d=e+f@g~h")
            .await
            .expect("delete"),
        1
    );
    assert_eq!(blobs.size(key).await.expect("size"), None);
}

/// Reading an absent key is `NotFound` (not retryable); `size` is `None`.
pub async fn read_of_an_absent_key_is_not_found(blobs: &Blobs) {
    for range in [None, Some(0..10)] {
        match blobs.read("no/such", range.clone()).await {
            Err(BlobError::NotFound(k)) => assert_eq!(k, "no/such"),
            other => panic!("read {range:?} of an absent key: {other:?}"),
        }
    }
    let e = blobs.read_all("no/such").await.expect_err("read_all");
    assert!(
        matches!(e, BlobError::NotFound(_)) && !e.is_retryable(),
        "{e}"
    );
    assert_eq!(blobs.size("no/such").await.expect("size"), None);
}

/// ~20 MiB written in odd-sized chunks reads back identical; the hash in `BlobInfo` is the
/// data's; the writer never holds more than two parts; reads come in chunks.
pub async fn streaming_writer_round_trips_a_large_object(blobs: &Blobs) {
    let want = data(20 * 1024 * 1024 + 12_345, 2);
    let mut w = blobs.writer("big/out.bin").await.expect("writer");
    let sizes = [1usize, 7_919, 65_537, 1_048_573, 3, 333_333];
    let (mut at, mut i) = (0, 0);
    while at < want.len() {
        let n = sizes[i % sizes.len()].min(want.len() - at);
        w.write(&want[at..at + n]).await.expect("write");
        at += n;
        i += 1;
        assert_eq!(w.written(), u64_of(at));
        assert!(
            w.buffered() <= 2 * PART_SIZE,
            "the writer holds {} bytes, more than two parts",
            w.buffered()
        );
    }
    let info = w.finish().await.expect("finish");
    assert_eq!(info.size, u64_of(want.len()));
    assert_eq!(info.sha256, sha256_hex(&want));
    assert_eq!(
        blobs.size("big/out.bin").await.expect("size"),
        Some(info.size)
    );

    let read = blobs.read("big/out.bin", None).await.expect("read");
    assert_eq!(read.size, info.size);
    let mut got = Vec::with_capacity(want.len());
    let mut largest = 0;
    let mut stream = read.stream;
    while let Some(chunk) = stream.try_next().await.expect("chunk") {
        largest = largest.max(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_same(&got, &want, "20 MiB round trip");
    assert!(largest < want.len(), "the object came in one buffer");
}

/// The writer stores the empty object, a small one, exactly one part and one part plus a byte,
/// and replaces an existing object.
pub async fn writer_handles_empty_small_and_exact_part_sizes(blobs: &Blobs) {
    let w = blobs.writer("w/empty").await.expect("writer");
    assert_eq!(w.finish().await.expect("finish"), BlobInfo::of(b""));
    assert_eq!(blobs.size("w/empty").await.expect("size"), Some(0));

    blobs
        .put("w/small", Bytes::from_static(b"old"))
        .await
        .expect("put");
    let mut w = blobs.writer("w/small").await.expect("writer");
    w.write(b"ab").await.expect("write");
    w.write(b"").await.expect("write nothing");
    w.write(b"c").await.expect("write");
    assert_eq!(w.finish().await.expect("finish"), BlobInfo::of(b"abc"));
    assert_eq!(blobs.read_all("w/small").await.expect("read"), "abc");

    for (key, len) in [
        ("w/one-part", PART_SIZE),
        ("w/part-and-a-byte", PART_SIZE + 1),
    ] {
        let want = data(len, 3);
        let mut w = blobs.writer(key).await.expect("writer");
        w.write(&want).await.expect("write");
        let info = w.finish().await.expect("finish");
        assert_eq!(info, BlobInfo::of(&want), "{key}");
        assert_same(&blobs.read_all(key).await.expect("read"), &want, key);
    }
}

/// Nothing is visible under the key before `finish`; `abort` and dropping the writer leave
/// nothing (and an object already there unchanged).
pub async fn object_is_invisible_until_finish_and_after_abort(blobs: &Blobs) {
    let big = data(PART_SIZE + 10, 4);
    let mut w = blobs.writer("v/obj").await.expect("writer");
    w.write(&big).await.expect("write");
    assert_eq!(
        blobs.size("v/obj").await.expect("size"),
        None,
        "visible before finish"
    );
    assert!(keys(blobs, "").await.is_empty(), "listed before finish");
    assert!(matches!(
        blobs.read("v/obj", None).await,
        Err(BlobError::NotFound(_))
    ));
    w.finish().await.expect("finish");
    assert_eq!(
        blobs.size("v/obj").await.expect("size"),
        Some(u64_of(big.len()))
    );

    for len in [10, PART_SIZE + 10] {
        let mut w = blobs.writer("v/aborted").await.expect("writer");
        w.write(&data(len, 5)).await.expect("write");
        w.abort().await.expect("abort");
        assert_eq!(blobs.size("v/aborted").await.expect("size"), None, "{len}");

        let mut w = blobs.writer("v/dropped").await.expect("writer");
        w.write(&data(len, 6)).await.expect("write");
        drop(w);
        assert_eq!(blobs.size("v/dropped").await.expect("size"), None, "{len}");
    }

    let mut w = blobs.writer("v/obj").await.expect("writer");
    w.write(&data(PART_SIZE + 1, 7)).await.expect("write");
    w.abort().await.expect("abort");
    assert_same(
        &blobs.read_all("v/obj").await.expect("read"),
        &big,
        "an aborted writer changed the object",
    );
    assert_eq!(keys(blobs, "").await, vec!["v/obj".to_string()]);
}

/// Ranges: start, middle, end, an end past the object (cut), open-ended, empty, and
/// `InvalidRange` for a start at or past the end or an end before the start.
pub async fn ranges(blobs: &Blobs) {
    let want = data(1000, 8);
    blobs
        .put("r/obj", Bytes::from(want.clone()))
        .await
        .expect("put");
    let cases: [(Range<u64>, Range<usize>); 7] = [
        (0..10, 0..10),
        (100..200, 100..200),
        (990..1000, 990..1000),
        (990..5000, 990..1000),
        (500..u64::MAX, 500..1000),
        (0..1000, 0..1000),
        (5..5, 5..5),
    ];
    for (asked, slice) in cases {
        let (size, range, bytes) = read_range(blobs, "r/obj", Some(asked.clone()))
            .await
            .unwrap_or_else(|e| panic!("{asked:?}: {e}"));
        assert_eq!(size, 1000, "{asked:?}");
        assert_eq!(range, u64_of(slice.start)..u64_of(slice.end), "{asked:?}");
        assert_same(&bytes, &want[slice], &format!("{asked:?}"));
    }
    // An end before the start, spelt out (a `10..5` literal reads as a mistake).
    let backwards = Range { start: 10, end: 5 };
    for asked in [1000..1001, 2000..3000, 1000..u64::MAX, backwards] {
        match blobs.read("r/obj", Some(asked.clone())).await {
            Err(BlobError::InvalidRange {
                key,
                start,
                end,
                size,
            }) => assert_eq!((key.as_str(), start..end, size), ("r/obj", asked, 1000)),
            other => panic!("{asked:?}: {other:?}"),
        }
    }
    blobs.put("r/empty", Bytes::new()).await.expect("put");
    for asked in [0..0, 0..u64::MAX] {
        let (size, range, bytes) = read_range(blobs, "r/empty", Some(asked.clone()))
            .await
            .unwrap_or_else(|e| panic!("empty {asked:?}: {e}"));
        assert_eq!((size, range, bytes.len()), (0, 0..0, 0), "{asked:?}");
    }
    assert!(matches!(
        blobs.read("r/empty", Some(1..2)).await,
        Err(BlobError::InvalidRange { .. })
    ));
}

/// `put_if_absent` creates once; a second call is `AlreadyExists` and keeps the first content,
/// also over an object from `put`.
pub async fn put_if_absent_keeps_the_first(blobs: &Blobs) {
    let info = blobs
        .put_if_absent("p/k", Bytes::from_static(b"first"))
        .await
        .expect("first put_if_absent");
    assert_eq!(info, BlobInfo::of(b"first"));
    match blobs
        .put_if_absent("p/k", Bytes::from_static(b"second"))
        .await
    {
        Err(e @ BlobError::AlreadyExists(_)) => assert!(!e.is_retryable()),
        other => panic!("second put_if_absent: {other:?}"),
    }
    assert_eq!(blobs.read_all("p/k").await.expect("read"), "first");

    blobs
        .put("p/plain", Bytes::from_static(b"plain"))
        .await
        .expect("put");
    assert!(matches!(
        blobs.put_if_absent("p/plain", Bytes::new()).await,
        Err(BlobError::AlreadyExists(k)) if k == "p/plain"
    ));
    assert_eq!(blobs.read_all("p/plain").await.expect("read"), "plain");

    blobs.delete("p/k").await.expect("delete");
    blobs
        .put_if_absent("p/k", Bytes::from_static(b"again"))
        .await
        .expect("put_if_absent after delete");
    assert_eq!(blobs.read_all("p/k").await.expect("read"), "again");
}

/// `delete` removes an object; deleting an absent key is fine.
pub async fn delete_is_idempotent(blobs: &Blobs) {
    blobs
        .put("d/x", Bytes::from_static(b"x"))
        .await
        .expect("put");
    blobs
        .put("d/y", Bytes::from_static(b"y"))
        .await
        .expect("put");
    blobs.delete("d/x").await.expect("delete");
    assert_eq!(blobs.size("d/x").await.expect("size"), None);
    blobs.delete("d/x").await.expect("delete again");
    blobs.delete("never/there").await.expect("delete absent");
    assert_eq!(keys(blobs, "").await, vec!["d/y".to_string()]);
}

/// `delete_prefix` deletes whole segments under the prefix (`a/b` spares `a/bc` and `a/b2`),
/// counts them, and `""` deletes everything.
pub async fn delete_prefix_deletes_only_under_the_prefix(blobs: &Blobs) {
    for k in ["a/b/x", "a/b/y/z", "a/bc", "a/b2", "b/x", "ab/x"] {
        blobs.put(k, Bytes::from_static(b"1")).await.expect("put");
    }
    assert_eq!(blobs.delete_prefix("a/b").await.expect("delete_prefix"), 2);
    assert_eq!(keys(blobs, "").await, ["a/b2", "a/bc", "ab/x", "b/x"]);
    assert_eq!(blobs.delete_prefix("a/b").await.expect("again"), 0);
    assert_eq!(blobs.delete_prefix("nothing/here").await.expect("none"), 0);
    assert_eq!(blobs.delete_prefix("a").await.expect("a"), 2);
    assert_eq!(keys(blobs, "").await, ["ab/x", "b/x"]);
    assert_eq!(blobs.delete_prefix("").await.expect("everything"), 2);
    assert!(keys(blobs, "").await.is_empty());
}

/// `list` returns keys relative to the store with their sizes, sorted, under whole-segment
/// prefixes.
pub async fn list_is_sorted_with_sizes(blobs: &Blobs) {
    let objects = [
        ("z", 1),
        ("m/2", 2),
        ("m/10", 10),
        ("a/x/y", 3),
        ("a/x-y", 4),
        ("m/1", 0),
        ("m/sub/deep/er", 5),
    ];
    for (k, n) in objects {
        blobs.put(k, Bytes::from(vec![b'.'; n])).await.expect("put");
    }
    let mut want: Vec<(String, u64)> = objects
        .iter()
        .map(|(k, n)| (k.to_string(), u64_of(*n)))
        .collect();
    want.sort();
    assert_eq!(blobs.list("").await.expect("list"), want);
    assert_eq!(
        blobs.list("m").await.expect("list m"),
        [("m/1", 0), ("m/10", 10), ("m/2", 2), ("m/sub/deep/er", 5)]
            .map(|(k, n)| (k.to_string(), n))
    );
    assert_eq!(keys(blobs, "a/x").await, ["a/x/y"]);
    assert_eq!(keys(blobs, "m/sub").await, ["m/sub/deep/er"]);
    assert!(
        keys(blobs, "m/1").await.is_empty(),
        "an object is not under itself"
    );
    assert!(keys(blobs, "none").await.is_empty());
}

/// Every method refuses invalid keys (and list/delete invalid prefixes) with `InvalidKey`,
/// touching nothing.
pub async fn invalid_keys_are_refused_by_every_method(blobs: &Blobs) {
    let invalid = |r: Result<(), BlobError>, what: &str, key: &str| match r {
        Err(BlobError::InvalidKey { .. }) => {}
        other => panic!("{what}({key:?}): {other:?}"),
    };
    let bad_keys = [
        "", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.", "a#1", "a b", "a\\b", "é", "a?",
    ];
    for key in bad_keys {
        let b = || Bytes::from_static(b"x");
        invalid(blobs.put(key, b()).await.map(drop), "put", key);
        invalid(
            blobs.put_if_absent(key, b()).await.map(drop),
            "put_if_absent",
            key,
        );
        invalid(blobs.writer(key).await.map(drop), "writer", key);
        invalid(blobs.size(key).await.map(drop), "size", key);
        invalid(blobs.read(key, None).await.map(drop), "read", key);
        invalid(
            blobs.read(key, Some(0..1)).await.map(drop),
            "read range",
            key,
        );
        invalid(blobs.read_all(key).await.map(drop), "read_all", key);
        invalid(blobs.delete(key).await, "delete", key);
        if !key.is_empty() {
            invalid(blobs.list(key).await.map(drop), "list", key);
            invalid(
                blobs.delete_prefix(key).await.map(drop),
                "delete_prefix",
                key,
            );
        }
    }
    let long = "k".repeat(crate::MAX_KEY_LEN + 1);
    invalid(
        blobs.put(&long, Bytes::new()).await.map(drop),
        "put",
        "long",
    );
    assert!(
        keys(blobs, "").await.is_empty(),
        "an invalid key stored something"
    );
}

/// Writers to different keys at once (two multipart, two small) each store their own data.
pub async fn concurrent_writers_to_different_keys(blobs: &Blobs) {
    let lens = [PART_SIZE + 1_000, PART_SIZE + 2_000, 1_000, 0];
    let tasks: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let blobs = blobs.clone();
            tokio::spawn(async move {
                let key = format!("c/{i}");
                let want = data(len, 10 + u64_of(i));
                let mut w = blobs.writer(&key).await.expect("writer");
                for chunk in want.chunks(100_003) {
                    w.write(chunk).await.expect("write");
                    tokio::task::yield_now().await;
                }
                let info = w.finish().await.expect("finish");
                assert_eq!(info, BlobInfo::of(&want), "{key}");
                (key, want)
            })
        })
        .collect();
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.expect("writer task"));
    }
    for (key, want) in &written {
        assert_same(&blobs.read_all(key).await.expect("read"), want, key);
    }
    let listed = blobs.list("c").await.expect("list");
    let want: Vec<(String, u64)> = (0..lens.len())
        .map(|i| (format!("c/{i}"), u64_of(lens[i])))
        .collect();
    assert_eq!(listed, want);
}
