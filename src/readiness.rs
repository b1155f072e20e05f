//! Readiness I/O: ask the kernel which of many sockets can make progress now.
//!
//! Introduced in lesson 05 (`lessons/05-epoll.md`); the event loop
//! ([`crate::event_loop`]) stands on it, and so does rung 8's proxy, which
//! registers two sockets per request (the client's and the upstream's).
//!
//! mio's nouns, one API over two back ends: [`Poll`] (`epoll_create1`),
//! [`Poll::register`] with a [`Token`] and an [`Interest`] (`epoll_ctl`),
//! [`Poll::poll`] filling a list of [`Event`]s (`epoll_wait`), and a
//! [`Waker`] another thread uses to interrupt the wait (an `eventfd`). The
//! back end is mio (what tokio stands on), or the same three system calls
//! made through nix, so a student can see exactly what mio does on Linux.
//! Both register sockets edge-triggered, which is all mio offers: a socket
//! is reported when it *becomes* ready, so its owner must read, write or
//! accept until `WouldBlock` before waiting again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
pub use mio::{Interest, Token};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::trace;

/// At most this many events come back from one wait; if more sockets are
/// ready, the next wait returns the rest, so nothing is lost.
const MAX_EVENTS: usize = 1024;

/// Which implementation of the readiness calls to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `mio::Poll`: portable (epoll on Linux, kqueue on the BSDs and macOS).
    Mio,
    /// The three epoll calls themselves, through nix: Linux only.
    RawEpoll,
}

/// One readiness event, in the same words for both back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Which socket: the number its owner chose when registering it.
    pub token: Token,
    /// Bytes, an EOF, a hang-up or an error wait to be read. (A hang-up or
    /// an error counts as readable: the next read reports it.)
    pub readable: bool,
    /// The send buffer has room again.
    pub writable: bool,
}

// ANCHOR: poll
/// The readiness API, two ways: mio's `Poll`, or the three epoll calls it
/// wraps on Linux, made through nix. One thread owns it; other threads
/// interrupt its wait through a [`Waker`].
pub struct Poll {
    inner: Inner,
}

enum Inner {
    Mio {
        poll: mio::Poll,
        events: mio::Events,
    },
    Raw {
        epoll: Epoll,
        events: Vec<EpollEvent>,
    },
}
// ANCHOR_END: poll

impl Poll {
    /// A new, empty interest list (`epoll_create1(2)`).
    pub fn new(backend: Backend) -> io::Result<Poll> {
        let inner = match backend {
            Backend::Mio => Inner::Mio {
                poll: mio::Poll::new()?,
                events: mio::Events::with_capacity(MAX_EVENTS),
            },
            Backend::RawEpoll => {
                // epoll_create1(2): int epoll_create1(int flags);
                let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
                trace!("epoll_create1(EPOLL_CLOEXEC) -> fd {}", epoll.0.as_raw_fd());
                let events = vec![EpollEvent::empty(); MAX_EVENTS];
                Inner::Raw { epoll, events }
            }
        };
        Ok(Poll { inner })
    }

    /// Start watching `fd` for `interest`; its events will carry `token`
    /// (`epoll_ctl(EPOLL_CTL_ADD)`). The socket must be non-blocking.
    pub fn register(&self, fd: BorrowedFd<'_>, token: Token, interest: Interest) -> io::Result<()> {
        trace!("epoll_ctl(ADD, fd {}, token {})", fd.as_raw_fd(), token.0);
        match &self.inner {
            // mio usually wraps its own socket types; `SourceFd` lets it
            // watch any fd, so both back ends serve std's sockets.
            Inner::Mio { poll, .. } => {
                poll.registry()
                    .register(&mut SourceFd(&fd.as_raw_fd()), token, interest)
            }
            Inner::Raw { epoll, .. } => {
                // epoll_ctl(2): int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
                Ok(epoll.add(fd, EpollEvent::new(epoll_flags(interest), token.0 as u64))?)
            }
        }
    }

    /// Change what `fd` is watched for (`epoll_ctl(EPOLL_CTL_MOD)`).
    pub fn reregister(
        &self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        trace!("epoll_ctl(MOD, fd {}, {interest:?})", fd.as_raw_fd());
        match &self.inner {
            Inner::Mio { poll, .. } => {
                poll.registry()
                    .reregister(&mut SourceFd(&fd.as_raw_fd()), token, interest)
            }
            Inner::Raw { epoll, .. } => {
                let mut event = EpollEvent::new(epoll_flags(interest), token.0 as u64);
                Ok(epoll.modify(fd, &mut event)?)
            }
        }
    }

    /// Stop watching `fd` (`epoll_ctl(EPOLL_CTL_DEL)`). Closing an fd also
    /// takes it off the list, so a socket about to be closed needs no call.
    pub fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        trace!("epoll_ctl(DEL, fd {})", fd.as_raw_fd());
        match &self.inner {
            Inner::Mio { poll, .. } => poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd())),
            Inner::Raw { epoll, .. } => Ok(epoll.delete(fd)?),
        }
    }

    // ANCHOR: wait
    /// Block until something is ready or `timeout` passes (`None`: no
    /// limit), and put what is ready into `events`. This is the only place
    /// an event loop ever sleeps.
    pub fn poll(&mut self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let result = match &mut self.inner {
            Inner::Mio { poll, events: got } => poll.poll(got, timeout).map(|()| {
                events.extend(got.iter().map(|e| Event {
                    token: e.token(),
                    readable: e.is_readable() || e.is_read_closed() || e.is_error(),
                    writable: e.is_writable() || e.is_write_closed(),
                }));
            }),
            Inner::Raw { epoll, events: got } => {
                // epoll_wait(2): int epoll_wait(int epfd, struct epoll_event *evs, int max, int ms);
                // Round up: a 0.4 ms wait rounded down to 0 would spin.
                let ms = timeout.map_or(-1, |t| {
                    t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                });
                let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
                // EPOLLHUP and EPOLLERR are reported even unasked.
                let hangup = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP;
                epoll.wait(got, timeout).map_err(io::Error::from).map(|n| {
                    events.extend(got[..n].iter().map(|e| Event {
                        token: Token(e.data() as usize),
                        readable: e.events().intersects(EpollFlags::EPOLLIN | hangup),
                        writable: e.events().contains(EpollFlags::EPOLLOUT),
                    }));
                })
            }
        };
        match result {
            // EINTR: a signal arrived during the wait (a debugger or strace
            // attaching): nothing is ready, the caller just looks again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other,
        }
    }
    // ANCHOR_END: wait

    /// The one waker of this poll: `wake()` from any thread makes the
    /// current or next wait return an event carrying `token`.
    pub fn waker(&self, token: Token) -> io::Result<Waker> {
        let waker = match &self.inner {
            Inner::Mio { poll, .. } => WakerFd::Mio(mio::Waker::new(poll.registry(), token)?),
            Inner::Raw { .. } => {
                // What mio::Waker is on Linux: an eventfd, a counter the
                // kernel reports readable when someone adds to it.
                let eventfd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
                trace!(
                    "eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC) -> fd {}",
                    eventfd.as_fd().as_raw_fd()
                );
                self.register(eventfd.as_fd(), token, Interest::READABLE)?;
                WakerFd::Raw(eventfd)
            }
        };
        Ok(Waker(Arc::new(waker)))
    }
}

// ANCHOR: raw_flags
/// The epoll flags for `interest`. EPOLLET makes it edge-triggered: report
/// a socket when it *becomes* ready, not for as long as it *is* ready.
/// Without it (level-triggered), every wait reports the socket again until
/// it is drained: simpler, but one more wake-up per event. EPOLLRDHUP also
/// reports the peer's half-close.
fn epoll_flags(interest: Interest) -> EpollFlags {
    let mut flags = EpollFlags::EPOLLET;
    if interest.is_readable() {
        flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    }
    if interest.is_writable() {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}
// ANCHOR_END: raw_flags

/// A handle that wakes the [`Poll`] it came from, from any thread. Clones
/// share one eventfd, which stays open until the last clone is dropped.
///
/// Keep a clone in the thread that polls: closing the eventfd takes its
/// pending event off epoll's ready list, so a waker dropped by another
/// thread right after waking could take its wake-up with it.
#[derive(Clone)]
pub struct Waker(Arc<WakerFd>);

enum WakerFd {
    Mio(mio::Waker),
    Raw(EventFd),
}

impl Waker {
    /// Make the poll's current or next wait return (eventfd `write(2)` of 1).
    pub fn wake(&self) -> io::Result<()> {
        match &*self.0 {
            WakerFd::Mio(waker) => waker.wake(),
            WakerFd::Raw(eventfd) => match eventfd.write(1) {
                Ok(_) => Ok(()),
                // The counter is full (after 2^64 - 2 wakes nobody read):
                // empty it, as mio does, then wake again.
                Err(nix::errno::Errno::EAGAIN) => {
                    let _ = eventfd.read();
                    eventfd.write(1).map(drop).map_err(io::Error::from)
                }
                Err(errno) => Err(errno.into()),
            },
        }
    }
}
