//! Transparent huge pages off for the process.
//!
//! mimalloc asks the kernel for huge pages on its arenas (`MADV_HUGEPAGE`), so on kernels in
//! `madvise` mode (Debian's default) one touched byte makes 2 MiB resident. The id table is
//! made with room for `polling.max_tracked` at start (`state/poll_store.rs`), touching only
//! its control bytes; with huge pages that room was resident at once (158 MiB for the
//! default million instead of 21 MiB), and memory that grows in 2 MiB faults stalls the
//! worker where 4 KiB faults do not (BENCHMARKS.md). With them off, a page becomes resident
//! when an id lands in it. Throughput did not measurably change.

/// Turns transparent huge pages off for this process and its later memory; a kernel that
/// refuses (or has none) changes nothing else, so that is logged, not fatal.
pub fn disable() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!("transparent huge pages stay as the kernel decides: {e}");
    }
}
