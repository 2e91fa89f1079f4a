//! The programs the benchmark runs, what they must print, and the sizes every phase shares.

/// The latency program, and what it must print.
pub(crate) const HELLO: &str = "print('hello')";
pub(crate) const HELLO_OUT: &str = "hello\n";
/// The throughput program, and what it must print.
pub(crate) const TRIVIAL: &str = "print(1)";
pub(crate) const TRIVIAL_OUT: &str = "1\n";
/// Sandboxes a one-process server runs at once (`--slots`), and the parallelism of the baseline.
pub(crate) const SLOTS: usize = 2;
/// The API's largest batch.
pub(crate) const CHUNK: usize = 1000;
