//! Giving freed heap memory back to the kernel.

/// Returns free heap pages to the kernel (glibc `malloc_trim`). An encoder's working
/// memory (brotli's hash tables are tens of MiB at the default level) is freed when its job
/// ends, but the allocator keeps the pages, so a worker that encoded once would stay that
/// large; called when the encoding queue drains, it brings RSS back to what is in use.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists; it takes
    // no pointers from us and is safe to call at any time in a single-threaded process.
    unsafe {
        libc::malloc_trim(0);
    }
}
