//! Batched UDP I/O on Linux for the load generators: `sendmmsg(2)` and
//! `recvmmsg(2)` over plain `std` sockets, with the kernel's receive stamp
//! (`SO_TIMESTAMPNS`) and a large receive buffer.

use std::ffi::{c_int, c_uint, c_void};
use std::net::{Ipv4Addr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;
use std::{io, mem, thread};

/// Packets per `sendmmsg`.
pub const SEND_CHUNK: usize = 8;
/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 64;

/// Sends `packets[i][..lens[i]]` to `to[i]` (up to `SEND_CHUNK` of them)
/// with one `sendmmsg(2)` call. Returns how many were sent: the kernel
/// stops at the first that fails (and fails the call only if that is the
/// first).
// Unsafe: the sendmmsg(2) FFI call and its zeroed C structs.
#[allow(unsafe_code)]
pub fn send_mmsg<const N: usize>(
    socket: &StdUdpSocket,
    packets: &[[u8; N]],
    lens: &[usize],
    to: &[libc::sockaddr_in],
) -> io::Result<usize> {
    let n = packets.len().min(lens.len()).min(to.len()).min(SEND_CHUNK);
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero
    // bytes are valid (null pointers, zero lengths).
    let mut iov: [libc::iovec; SEND_CHUNK] = unsafe { mem::zeroed() };
    let mut msgs: [libc::mmsghdr; SEND_CHUNK] = unsafe { mem::zeroed() };
    for ((v, p), &len) in iov.iter_mut().zip(&packets[..n]).zip(lens) {
        // The kernel only reads through it.
        v.iov_base = p.as_ptr() as *mut c_void;
        v.iov_len = len.min(N);
    }
    let iov_ptr = iov.as_mut_ptr();
    for (i, (m, addr)) in msgs.iter_mut().zip(&to[..n]).enumerate() {
        m.msg_hdr.msg_name = addr as *const libc::sockaddr_in as *mut c_void;
        m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov_ptr.wrapping_add(i);
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first n entries of msgs point to n live iovecs, packets
    // and addresses of the sizes given, all borrowed for the whole call;
    // the kernel writes only msgs[..n].msg_len.
    let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as c_uint, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends all of `packets[i][..lens[i]]` to `to[i]` with as many
/// [`send_mmsg`] calls as it takes; a packet the kernel refuses (the first
/// of a call that fails) is skipped. Returns how many were sent and how
/// many refused.
pub fn send_all<const N: usize>(
    socket: &StdUdpSocket,
    packets: &[[u8; N]],
    lens: &[usize],
    to: &[libc::sockaddr_in],
) -> (usize, usize) {
    let n = packets.len().min(lens.len()).min(to.len());
    let (mut done, mut refused) = (0, 0);
    while done < n {
        match send_mmsg(socket, &packets[done..n], &lens[done..n], &to[done..n]) {
            Ok(k) if k > 0 => done += k,
            _ => {
                refused += 1;
                done += 1;
            }
        }
    }
    (done - refused, refused)
}

/// Where one datagram lands: its bytes (up to `N`, the rest cut off),
/// source address and control messages (the kernel's receive stamp).
#[derive(Clone)]
pub struct RecvSlot<const N: usize> {
    pub buf: [u8; N],
    pub name: libc::sockaddr_in,
    /// Room for a `SCM_TIMESTAMPNS` message (aligned for `cmsghdr`).
    pub control: [u64; 8],
}

impl<const N: usize> RecvSlot<N> {
    pub fn new() -> RecvSlot<N> {
        RecvSlot {
            buf: [0; N],
            name: localhost(0),
            control: [0; 8],
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    /// Source port.
    pub port: u16,
    /// Kernel receive stamp, CLOCK_REALTIME nanoseconds; 0 if none.
    pub kernel_ns: u64,
}

/// Receives up to `RECV_BATCH` datagrams with one `recvmmsg(2)` call:
/// blocks until one is queued (`MSG_WAITFORONE`), then takes what else is
/// queued. Datagram i lands in `slots[i]`, its length, source port and
/// kernel stamp in `out[i]`. Returns how many; 0 when `SO_RCVTIMEO` passed
/// with nothing.
// Unsafe: the recvmmsg(2) FFI call, its zeroed C structs and the
// control messages it fills.
#[allow(unsafe_code)]
pub fn recv_mmsg<const N: usize>(
    socket: &StdUdpSocket,
    slots: &mut [RecvSlot<N>],
    out: &mut [Datagram; RECV_BATCH],
) -> io::Result<usize> {
    let n = slots.len().min(RECV_BATCH);
    // SAFETY: as in send_mmsg, all-zero iovecs and mmsghdrs are valid.
    let mut iov: [libc::iovec; RECV_BATCH] = unsafe { mem::zeroed() };
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { mem::zeroed() };
    let iov_ptr = iov.as_mut_ptr();
    for (i, (m, s)) in msgs.iter_mut().zip(slots[..n].iter_mut()).enumerate() {
        // SAFETY: i < n <= RECV_BATCH, inside iov.
        let v = unsafe { &mut *iov_ptr.add(i) };
        v.iov_base = s.buf.as_mut_ptr() as *mut c_void;
        v.iov_len = N;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (&mut s.name as *mut libc::sockaddr_in).cast::<c_void>();
        m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_control = s.control.as_mut_ptr().cast::<c_void>();
        m.msg_hdr.msg_controllen = mem::size_of_val(&s.control) as _;
    }
    // SAFETY: the first n entries of msgs point to n live, exclusively
    // borrowed buffers, addresses and control buffers of the sizes given;
    // no timeout pointer (the socket's SO_RCVTIMEO bounds the wait).
    let r = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as c_uint,
            libc::MSG_WAITFORONE as _,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(0),
            _ => Err(e),
        };
    }
    let r = r as usize;
    for ((d, m), s) in out.iter_mut().zip(&msgs[..r]).zip(slots.iter()) {
        d.len = m.msg_len as usize;
        d.port = u16::from_be(s.name.sin_port);
        d.kernel_ns = 0;
        let hdr = &m.msg_hdr;
        // SAFETY: the kernel filled msg_control up to msg_controllen with
        // well-formed cmsghdrs; the CMSG_* helpers stay inside that length,
        // and the stamp is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    d.kernel_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
    }
    Ok(r)
}

/// An unconnected UDP socket on 127.0.0.1 with a receive buffer of
/// `rcvbuf` bytes; if the buffer cannot be set, says so on stderr as
/// `who` and goes on.
pub fn generator_socket(who: &str, rcvbuf: usize) -> io::Result<StdUdpSocket> {
    let s = StdUdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    if let Err(e) = set_rcvbuf(&s, rcvbuf) {
        eprintln!("{who}: receive buffer of {rcvbuf} bytes not set: {e}");
    }
    Ok(s)
}

/// Asks the kernel to stamp each datagram's arrival (`SO_TIMESTAMPNS`).
pub fn set_timestamping(socket: &StdUdpSocket) -> io::Result<()> {
    setsockopt_int(socket, libc::SO_TIMESTAMPNS, 1)
}

/// Sets the socket's receive buffer to `bytes`: `SO_RCVBUFFORCE` (needs
/// CAP_NET_ADMIN, ignores `net.core.rmem_max`), else `SO_RCVBUF` (capped
/// at `rmem_max`).
pub fn set_rcvbuf(socket: &StdUdpSocket, bytes: usize) -> io::Result<()> {
    let value = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    setsockopt_int(socket, libc::SO_RCVBUFFORCE, value)
        .or_else(|_| setsockopt_int(socket, libc::SO_RCVBUF, value))
}

// Unsafe: the setsockopt(2) FFI call.
#[allow(unsafe_code)]
fn setsockopt_int(socket: &StdUdpSocket, option: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const c_int).cast::<c_void>(),
            mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// 127.0.0.1:`port` as the kernel takes it.
pub fn localhost(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: Ipv4Addr::LOCALHOST.to_bits().to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sleeps until `t` (not at all if it has passed).
pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}
