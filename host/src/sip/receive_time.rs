//! When a datagram reached the socket: the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`), so the time a request waited in the receive buffer
//! can be known. That wait is invisible from inside the process, and under
//! overload it is where the queue grows: a receive loop that falls behind
//! leaves megabytes of requests in the buffer, each one older than the
//! client's retransmission timer by the time it is read.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::net::UdpSocket;

/// Asks the kernel to stamp every datagram; false when it refuses.
pub fn enable(socket: &UdpSocket) -> bool {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).is_ok()
}

/// One datagram into `buf`: its length, its source, and how long it waited
/// since the kernel stamped it (zero without a stamp). `WouldBlock` when
/// nothing is waiting, as `recv_from` does, so it runs under `async_io`.
pub fn recv(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Duration)> {
    let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let remote = msg
        .address
        .as_ref()
        .and_then(socket_addr)
        .ok_or_else(|| std::io::Error::other("datagram without an IP source"))?;
    let mut queued = Duration::ZERO;
    for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmTimestampns(at) = cmsg {
            let at = UNIX_EPOCH + Duration::from(at);
            queued = SystemTime::now().duration_since(at).unwrap_or_default();
        }
    }
    Ok((msg.bytes, remote, queued))
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_left_in_the_buffer_shows_how_long_it_waited() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(enable(&server));
        // The kernel turns stamping on a moment later (a deferred static
        // key); until then a datagram is stamped when it is read.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"OPTIONS", server.local_addr().unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let mut buf = [0u8; 64];
        let (n, from, queued) = server
            .async_io(tokio::io::Interest::READABLE, || recv(&server, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"OPTIONS");
        assert_eq!(from, client.local_addr().unwrap());
        assert!(
            queued >= Duration::from_millis(100) && queued < Duration::from_secs(5),
            "{queued:?}"
        );
        // Nothing more waiting: WouldBlock, as recv_from gives.
        let err = recv(&server, &mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
