//! The system-call fence: the only module where `unsafe` is allowed.
//!
//! Every `unsafe` item in the crate is listed here:
//! - [`process::fork_worker`]: `fork()`, sound because the master is single-threaded.
//! - [`socket::accept`]: `accept4()` into a `sockaddr_storage`, and adopting the new fd.
//! - [`fs::RootDir::open_beneath`]: adopting the fd that `openat2()` returns.
//! - [`shm::Scoreboard::new`]: `mmap()` of the shared worker slots, viewed as a `'static` table.
//! - [`mem::release_free_memory`]: glibc `malloc_trim(0)`.
//! - [`listen_fds::take`]: adopting the listening sockets passed by systemd or by the
//!   master being upgraded (`OwnedFd::from_raw_fd`), and `fcntl(F_GETFD)` probes.
//! - [`io::read_append`]: `read()` into a `Vec`'s spare capacity, then `set_len`.
//!
//! Everything else goes through `nix`, `socket2` or `std`, which are safe wrappers.

pub mod fs;
pub mod io;
pub mod listen_fds;
pub mod mem;
pub mod process;
pub mod shm;
pub mod signals;
pub mod socket;
