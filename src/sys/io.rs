//! Reading into a `Vec`'s spare capacity, so a large read buffer is never zeroed first.
//!
//! `Read::read` wants an initialised `&mut [u8]`: growing a `Vec` with `resize(n, 0)` before
//! each read zeroes the whole window (64 KiB for an upstream read of a 1 KiB answer, which
//! cost more than everything else a proxied request does). `read(2)` only writes, so the
//! bytes it reports are initialised by the kernel and the rest stays untouched.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Reads at most `max` bytes from `fd` and appends them to `buf` (growing its capacity when
/// needed). `Ok(0)` at end of file; errors (`WouldBlock` included) leave `buf` unchanged.
pub fn read_append(fd: impl AsFd, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: `spare` is writable memory owned by `buf` of at least `want` bytes; read(2)
    // writes at most `want` bytes into it and retains no pointer. The fd is borrowed for the
    // call, so it is open.
    let n = unsafe {
        libc::read(
            fd.as_fd().as_raw_fd(),
            spare.as_mut_ptr().cast::<libc::c_void>(),
            want,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    debug_assert!(n <= want);
    // SAFETY: the kernel initialised exactly `n <= want` bytes after the current length, and
    // the capacity holds them.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn appends_what_was_read_and_reports_eof() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        let mut buf = b"ab".to_vec();
        assert_eq!(read_append(&b, &mut buf, 64 * 1024).unwrap(), 5);
        assert_eq!(buf, b"abhello");
        drop(a);
        assert_eq!(read_append(&b, &mut buf, 3).unwrap(), 0);
        assert_eq!(buf, b"abhello");
    }

    #[test]
    fn never_reads_more_than_max_and_keeps_buf_on_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"0123456789").unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_append(&b, &mut buf, 4).unwrap(), 4);
        assert_eq!(buf, b"0123");
        b.set_nonblocking(true).unwrap();
        assert_eq!(read_append(&b, &mut buf, 100).unwrap(), 6);
        let e = read_append(&b, &mut buf, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(buf, b"0123456789");
    }
}
