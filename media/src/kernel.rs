//! Kernel forwarding: once a plain RTP stream has settled, its packets are
//! rewritten and forwarded by the kernel (nftables) instead of crossing user
//! space, the way rtpengine's kernel module takes over from its daemon.
//!
//! On loopback the relay's own receive, send and wake-up cost about what the
//! phones' kernels pay (~10 µs of CPU per packet here), so a user-space relay
//! needs a core for ~100,000 packets/s; the kernel path drops that to a
//! lookup and a header rewrite in the sender's context (~4 µs, measured in
//! `bench/media.sh`).
//!
//! The relay keeps the decisions: a packet from a source the relay has
//! latched goes out from the other side's port to the other side's address,
//! exactly as user space would send it. Anything else — a new source, STUN,
//! a stream with ICE — still reaches the relay's sockets, which re-latch and
//! update the kernel's entries. Packets are not tracked by conntrack, so an
//! entry stops the moment it is deleted, and nothing else on the host sees
//! the rewrite.
//!
//! One nftables table per relay (`softswitch_relay_<address>_<port_min>`),
//! made at start (a stale one from a crash is replaced) and deleted when the
//! relay is dropped or [`crate::Relay::shutdown`] is called. Changes are
//! batched by one thread into one `nft -f -` transaction at most every
//! [`BATCH_WAIT`]–[`BATCH_WAIT_MAX`]; every [`POLL`] it asks which entries
//! carried packets, so a stream's silence timeout keeps working while the
//! kernel carries it. (By hand rather than through a crate: the netlink
//! one, `rustables`, is GPL-3, and the JSON one drives this same `nft`.)
//!
//! Needs CAP_NET_ADMIN and the `nft` tool; peers on other hosts also need
//! `net.ipv4.ip_forward=1` (the packet is forwarded, not sent by a socket),
//! (`net.ipv6.conf.all.forwarding=1`), otherwise only streams between local
//! addresses are handed over. IPv4 or IPv6, as the bind address, which must
//! be a specific one (it is the rewritten source).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::relay::{RelayStats, Shared};

/// The packet mark's high half while the kernel carries a packet; the low
/// half is the relay port it arrived on (unique within the host).
const MARK_TAG: u32 = 0x5353_0000;
/// How long changes wait to be sent together, at least.
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// And at most: each `nft` run reads the table first, which takes longer
/// the more entries it holds, so the wait grows with the last run's time
/// (keeping `nft` to about a fifth of a core under churn) up to this. A
/// released pair rests for seconds before reuse, well beyond.
const BATCH_WAIT_MAX: Duration = Duration::from_millis(500);
/// How often the kernel is asked which entries carried packets: the
/// silence timeout sees the kernel's packets this late at worst.
const POLL: Duration = if cfg!(test) {
    Duration::from_millis(500)
} else {
    Duration::from_secs(5)
};
/// An entry is in the `seen` set from its first packet for this long (then
/// again from the next packet), so a poll sees every entry that carried a
/// packet since the last poll.
const SEEN_FOR: Duration = if cfg!(test) {
    Duration::from_secs(1)
} else {
    Duration::from_secs(6)
};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("kernel forwarding needs a specific bind address (not 0.0.0.0 or ::)")]
    Address,
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Nft(String),
}

/// What the relay asks of the kernel for one relay port (one direction of
/// one component of a stream).
pub(crate) enum Op {
    /// Packets from `from` arriving on `port` leave from `out_port` to `to`.
    Set {
        port: u16,
        from: SocketAddr,
        to: SocketAddr,
        out_port: u16,
        stream: Weak<Shared>,
    },
    /// Packets arriving on `port` go to the relay's socket again.
    Clear { port: u16 },
}

/// The relay's handle on its nftables table.
pub(crate) struct Kernel {
    ops: Mutex<Option<Sender<Op>>>,
    /// Relay ports whose entry is being deleted: not handed to another
    /// call until the kernel has let go of them.
    clearing: Arc<Mutex<HashSet<u16>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Peers on other hosts can be handed over (forwarding is on).
    forwards: bool,
    bind: IpAddr,
}

impl Kernel {
    /// Makes the table for the relay's ports and starts the thread that
    /// keeps it.
    pub(crate) fn start(
        bind: std::net::IpAddr,
        port_min: u16,
        port_max: u16,
        stats: Arc<RelayStats>,
    ) -> Result<Kernel, KernelError> {
        if bind.is_unspecified() {
            return Err(KernelError::Address);
        }
        // Relays on different addresses may share a port range.
        let table = format!(
            "softswitch_relay_{}_{port_min}",
            bind.to_string().replace(['.', ':'], "_")
        );
        let ruleset = ruleset(&table, bind, port_min, port_max);
        nft(&ruleset)?;
        let sysctl = match bind {
            IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_forward",
            IpAddr::V6(_) => "/proc/sys/net/ipv6/conf/all/forwarding",
        };
        let forwards = std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "1");
        let (tx, rx) = mpsc::channel();
        let clearing = Arc::new(Mutex::new(HashSet::new()));
        let keeper = Keeper {
            clearing: clearing.clone(),
            table,
            bind,
            ruleset,
            installed: HashMap::new(),
            stats,
            failed: false,
        };
        let thread = std::thread::Builder::new()
            .name("relay-kernel".into())
            .spawn(move || keeper.run(rx))
            .map_err(KernelError::Spawn)?;
        Ok(Kernel {
            ops: Mutex::new(Some(tx)),
            clearing,
            thread: Mutex::new(Some(thread)),
            forwards,
            bind,
        })
    }

    /// Whether packets from `from` to `to` can be left to the kernel: the
    /// relay's address family, and `to` on this host unless it forwards.
    pub(crate) fn carries(&self, from: SocketAddr, to: SocketAddr) -> bool {
        let family = self.bind.is_ipv4();
        from.is_ipv4() == family
            && to.is_ipv4() == family
            && (self.forwards || to.ip().is_loopback() || to.ip() == self.bind)
    }

    pub(crate) fn send(&self, op: Op) {
        if let Op::Clear { port } = op {
            crate::relay::lock(&self.clearing).insert(port);
        }
        if let Some(tx) = &*crate::relay::lock(&self.ops) {
            // The thread only stops at shutdown: a change after it is moot.
            let _ = tx.send(op);
        }
    }

    /// Whether the kernel may still forward packets arriving on `port`
    /// for a stream that is gone.
    pub(crate) fn clearing(&self, port: u16) -> bool {
        crate::relay::lock(&self.clearing).contains(&port)
    }

    /// Deletes the table and stops the thread; packets go to the relay's
    /// sockets again.
    pub(crate) fn shutdown(&self) {
        crate::relay::lock(&self.ops).take();
        if let Some(thread) = crate::relay::lock(&self.thread).take() {
            // The keeper itself can hold the last reference (a stream it
            // was touching): it stops on its own once the channel is gone.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The table. A packet for one of the relay's ports is looked up once, by
/// port and source, in a verdict map that sends it to the chain of its
/// entry, which rewrites it with constants and counts it; it is routed
/// after the rewrite (to the other side) and never tracked by conntrack.
/// The source is rewritten where the kernel allows it: at once for packets
/// sent by this host, after routing for packets that arrived (forwarded or
/// delivered locally; a local source address on an arriving packet would
/// be dropped as martian), found again by the mark, which is cleared once
/// the rewrite is complete.
fn ruleset(table: &str, bind: IpAddr, port_min: u16, port_max: u16) -> String {
    let (f, addr) = names(bind);
    let key = format!("udp dport . {f} saddr . udp sport");
    let ours = format!("{f} daddr {bind} udp dport {port_min}-{port_max}");
    let finish = format!(
        "meta mark & 0xffff0000 == {MARK_TAG:#x} {f} saddr set {bind} \
         udp sport set meta mark map @src_port meta mark set 0"
    );
    format!(
        "table {f} {table} {{}}
delete table {f} {table}
table {f} {table} {{
  map arrive {{ type inet_service . {addr} . inet_service : verdict; }}
  map send {{ type inet_service . {addr} . inet_service : verdict; }}
  map src_port {{ type mark : inet_service; }}
  set seen {{ type inet_service; flags dynamic,timeout; size 262144; }}
  chain arrived {{ type filter hook prerouting priority raw; policy accept;
    {ours} {key} vmap @arrive
  }}
  chain sent {{ type route hook output priority raw; policy accept;
    {ours} {key} vmap @send
  }}
  chain forwarded_out {{ type filter hook postrouting priority 100; policy accept;
    {finish}
  }}
  chain delivered {{ type filter hook input priority 100; policy accept;
    {finish}
  }}
}}
"
    )
}

/// nftables' names for an address family: the table family (also the
/// header's keyword) and the address type.
fn names(ip: IpAddr) -> (&'static str, &'static str) {
    match ip {
        IpAddr::V4(_) => ("ip", "ipv4_addr"),
        IpAddr::V6(_) => ("ip6", "ipv6_addr"),
    }
}

/// An entry: packets from `from` arriving on `port` leave from `out_port`
/// to `to`. Its chains are named after the port; each packet puts the port
/// in the `seen` set for a while, which tells the poll the entry is alive.
fn add_entry(
    t: &str,
    bind: IpAddr,
    port: u16,
    from: SocketAddr,
    to: SocketAddr,
    out_port: u16,
) -> String {
    let f = names(bind).0;
    let m = mark(port);
    let (to_ip, to_port) = (to.ip(), to.port());
    let key = format!("{port} . {} . {}", from.ip(), from.port());
    let seen = format!("add @seen {{ udp dport timeout {}s }}", SEEN_FOR.as_secs());
    let dest = format!("{f} daddr set {to_ip} udp dport set {to_port}");
    format!(
        "add chain {f} {t} a{port}
add rule {f} {t} a{port} {seen} {dest} meta mark set {m:#x} notrack
add chain {f} {t} s{port}
add rule {f} {t} s{port} {seen} {f} saddr set {bind} udp sport set {out_port} {dest} notrack
add element {f} {t} src_port {{ {m:#x} : {out_port} }}
add element {f} {t} arrive {{ {key} : goto a{port} }}
add element {f} {t} send {{ {key} : goto s{port} }}
"
    )
}

fn delete_entry(t: &str, f: &str, port: u16, from: SocketAddr) -> String {
    let m = mark(port);
    let key = format!("{port} . {} . {}", from.ip(), from.port());
    format!(
        "delete element {f} {t} arrive {{ {key} }}
delete element {f} {t} send {{ {key} }}
delete element {f} {t} src_port {{ {m:#x} }}
delete chain {f} {t} a{port}
delete chain {f} {t} s{port}
"
    )
}

/// Runs `nft -f -` on `script` (one transaction: all of it or nothing).
fn nft(script: &str) -> Result<String, KernelError> {
    run_nft(Command::new("nft"), script)
}

/// The same at a lower priority (`nice`), for bookkeeping the media must
/// not wait on. (Not for changes: handing streams over is what relieves a
/// loaded machine, and a niced run would starve exactly then.)
fn nft_niced(script: &str) -> Result<String, KernelError> {
    let mut command = Command::new("nice");
    command.args(["-n", "10", "nft"]);
    run_nft(command, script)
}

fn run_nft(mut command: Command, script: &str) -> Result<String, KernelError> {
    let mut child = command
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(KernelError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(KernelError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(KernelError::Spawn)?;
    if !out.status.success() {
        return Err(KernelError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mark(port: u16) -> u32 {
    MARK_TAG | u32::from(port)
}

/// What one relay port has in the kernel.
struct Installed {
    from: SocketAddr,
    stream: Weak<Shared>,
}

/// The thread's state: the only writer of the table, so it knows exactly
/// what is in it (a transaction that deletes a missing element fails).
struct Keeper {
    table: String,
    clearing: Arc<Mutex<HashSet<u16>>>,
    bind: IpAddr,
    /// The empty table, to start again from after a failure.
    ruleset: String,
    installed: HashMap<u16, Installed>,
    stats: Arc<RelayStats>,
    /// A transaction failed: the table was emptied and nothing more is
    /// handed over; the relay's sockets carry every packet.
    failed: bool,
}

impl Keeper {
    /// `ip` or `ip6`.
    fn family(&self) -> &'static str {
        names(self.bind).0
    }

    fn run(mut self, rx: Receiver<Op>) {
        let mut next_poll = Instant::now() + POLL;
        let mut batch_wait = BATCH_WAIT;
        loop {
            let wait = next_poll.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(op) => {
                    let mut batch = vec![op];
                    let until = Instant::now() + batch_wait;
                    while let Ok(op) =
                        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        batch.push(op);
                    }
                    let started = Instant::now();
                    self.apply(batch);
                    batch_wait = (started.elapsed() * 4).clamp(BATCH_WAIT, BATCH_WAIT_MAX);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_poll {
                self.poll();
                next_poll = Instant::now() + POLL;
            }
        }
        if let Err(e) = nft(&format!("delete table {} {}\n", self.family(), self.table)) {
            tracing::warn!(table = %self.table, error = %e, "cannot delete the relay's nftables table");
        }
    }

    fn apply(&mut self, batch: Vec<Op>) {
        let mut script = String::new();
        let mut cleared = Vec::new();
        for op in batch {
            match op {
                Op::Clear { port } => {
                    self.uninstall(&mut script, port);
                    cleared.push(port);
                }
                Op::Set {
                    port,
                    from,
                    to,
                    out_port,
                    stream,
                } if !self.failed => {
                    self.uninstall(&mut script, port);
                    script.push_str(&add_entry(&self.table, self.bind, port, from, to, out_port));
                    self.installed.insert(port, Installed { from, stream });
                }
                // The table was emptied after a failure: nothing goes in.
                Op::Set { .. } => {}
            }
        }
        let t = &self.table;
        if !script.is_empty()
            && let Err(e) = nft(&script)
        {
            tracing::error!(table = %t, error = %e, "kernel forwarding failed; the relay carries every packet from now on");
            self.failed = true;
            self.installed.clear();
            if let Err(e) = nft(&self.ruleset) {
                tracing::error!(table = %t, error = %e, "cannot empty the relay's nftables table");
            }
        }
        // Applied, or the table was emptied: either way the kernel has let go.
        let mut clearing = crate::relay::lock(&self.clearing);
        for port in cleared {
            clearing.remove(&port);
        }
        drop(clearing);
        self.stats
            .streams_in_kernel
            .store(self.installed.len(), Ordering::Relaxed);
    }

    /// Adds to `script` the deletion of what `port` has in the kernel.
    fn uninstall(&mut self, script: &mut String, port: u16) {
        if let Some(old) = self.installed.remove(&port) {
            script.push_str(&delete_entry(&self.table, self.family(), port, old.from));
        }
    }

    /// Tells each stream whose entries carried packets lately that it is
    /// alive. (Listing the set is cheap; listing per-entry counters would
    /// make nft read every chain of the table.)
    fn poll(&mut self) {
        if self.installed.is_empty() {
            return;
        }
        let t = &self.table;
        let listing = match nft_niced(&format!("list set {} {t} seen\n", self.family())) {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(table = %t, error = %e, "cannot read the kernel's forwarding state");
                return;
            }
        };
        for port in seen_ports(&listing) {
            if let Some(stream) = self.installed.get(&port).and_then(|i| i.stream.upgrade()) {
                stream.touch();
            }
        }
    }
}

/// The relay ports in an `nft list set … seen` listing.
fn seen_ports(listing: &str) -> Vec<u16> {
    let Some(start) = listing.find("elements = {") else {
        return Vec::new();
    };
    let elements = &listing[start + "elements = {".len()..];
    let end = elements.find('}').unwrap_or(elements.len());
    elements[..end]
        .split(',')
        .filter_map(|e| e.split_whitespace().next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn the_ports_seen_are_read_from_an_nft_listing() {
        let listing = "table ip softswitch_relay_12000 {
\tset seen {
\t\ttype inet_service
\t\tsize 262144
\t\tflags dynamic,timeout
\t\telements = { 12000 timeout 4s expires 2s752ms, 12002 timeout 4s expires 3s1ms,
\t\t\t     12004 timeout 4s expires 1s }
\t}
}
";
        assert_eq!(seen_ports(listing), vec![12000, 12002, 12004]);
        let empty = "table ip t {\n\tset seen {\n\t\ttype inet_service\n\t}\n}\n";
        assert!(seen_ports(empty).is_empty());
    }

    #[test]
    fn an_entry_is_deleted_with_everything_it_added() {
        let from = SocketAddr::from(([192, 0, 2, 7], 4000));
        let to = SocketAddr::from(([198, 51, 100, 9], 5000));
        let added = add_entry("t", [10, 0, 0, 1].into(), 20000, from, to, 20002);
        let deleted = delete_entry("t", "ip", 20000, from);
        let objects = |script: &str, verb: &str| -> Vec<String> {
            let mut o: Vec<String> = script
                .lines()
                .filter_map(|l| l.strip_prefix(verb))
                .filter(|l| !l.starts_with("rule"))
                .map(|l| {
                    l.split(" : ")
                        .next()
                        .unwrap()
                        .trim_end_matches(" }")
                        .to_string()
                })
                .map(|l| l.trim_end_matches(" }").replace(" { ", " "))
                .collect();
            o.sort();
            o
        };
        assert_eq!(objects(&added, "add "), objects(&deleted, "delete "));
        assert!(added.contains("ip daddr set 198.51.100.9 udp dport set 5000"));
        assert!(added.contains("arrive { 20000 . 192.0.2.7 . 4000 : goto a20000 }"));
    }

    #[test]
    fn the_ruleset_only_takes_packets_for_the_relays_own_ports() {
        let rules = ruleset("t", [10, 0, 0, 1].into(), 20000, 29999);
        assert_eq!(
            rules
                .matches(
                    "ip daddr 10.0.0.1 udp dport 20000-29999 udp dport . ip saddr . udp sport vmap"
                )
                .count(),
            2
        );
        assert!(rules.starts_with("table ip t {}\ndelete table ip t\n"));
        let v6 = ruleset("t", Ipv6Addr::LOCALHOST.into(), 20000, 29999);
        assert!(v6.contains(
            "ip6 daddr ::1 udp dport 20000-29999 udp dport . ip6 saddr . udp sport vmap"
        ));
        assert!(v6.contains("type inet_service . ipv6_addr . inet_service : verdict"));
    }

    /// Network namespaces made for one test, deleted (with their links) on drop.
    struct Lab(Vec<String>);

    impl Drop for Lab {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }

    fn sh(ns: Option<&str>, args: &[&str]) {
        let mut all: Vec<&str> = ns
            .map(|ns| vec!["ip", "netns", "exec", ns])
            .unwrap_or_default();
        all.extend_from_slice(args);
        let out = Command::new(all[0]).args(&all[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{all:?} failed (needs root, iproute2, nftables): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A UDP listener in `ns` that prints the first datagram it gets
    /// (payload in hex, source address and port).
    fn listen(ns: &str, ip: &str, port: u16) -> std::process::Child {
        const LISTENER: &str = "import socket,sys\n\
            s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
            s.bind((sys.argv[1],int(sys.argv[2])))\n\
            s.settimeout(5)\n\
            d,a=s.recvfrom(2048)\n\
            print(d.hex(),a[0],a[1])\n";
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-c",
                LISTENER,
                ip,
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Packets of phones on other hosts take the other path through the
    /// table (arrived → forwarded or delivered → source rewritten after
    /// routing), which the relay tests on loopback do not: a router
    /// namespace with the ruleset and two entries, a phone network on each
    /// side.
    #[test]
    fn packets_from_another_host_are_rewritten_forwarded_and_delivered() {
        let tag = format!("ssk{}", std::process::id() % 100_000);
        let (r, a, b) = (format!("{tag}r"), format!("{tag}a"), format!("{tag}b"));
        let lab = Lab(vec![r.clone(), a.clone(), b.clone()]);
        for ns in &lab.0 {
            sh(None, &["ip", "netns", "add", ns]);
            sh(Some(ns), &["ip", "link", "set", "lo", "up"]);
        }
        for (phone, net) in [(&a, "10.201.1"), (&b, "10.201.2")] {
            let (inside, outside) = (format!("{phone}0"), format!("{phone}r"));
            sh(
                None,
                &[
                    "ip", "link", "add", &inside, "netns", phone, "type", "veth", "peer", "name",
                    &outside, "netns", &r,
                ],
            );
            sh(
                Some(phone),
                &["ip", "addr", "add", &format!("{net}.2/24"), "dev", &inside],
            );
            sh(Some(phone), &["ip", "link", "set", &inside, "up"]);
            sh(
                Some(phone),
                &["ip", "route", "add", "default", "via", &format!("{net}.1")],
            );
            sh(
                Some(&r),
                &["ip", "addr", "add", &format!("{net}.1/24"), "dev", &outside],
            );
            sh(Some(&r), &["ip", "link", "set", &outside, "up"]);
        }
        sh(Some(&r), &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);

        let bind = IpAddr::from([10, 201, 1, 1]);
        let phone_a = |port| SocketAddr::from(([10, 201, 1, 2], port));
        let mut script = ruleset("relay", bind, 30000, 30099);
        // Forwarded: A's packets to relay port 30000 go to B's phone.
        let to_b = SocketAddr::from(([10, 201, 2, 2], 5000));
        script += &add_entry("relay", bind, 30000, phone_a(4000), to_b, 30002);
        // Delivered: to a program on the relay's host, on its other address.
        let local = SocketAddr::from(([10, 201, 2, 1], 6000));
        script += &add_entry("relay", bind, 30004, phone_a(4001), local, 30006);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &r, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft refused:\n{script}");

        let at_b = listen(&b, "10.201.2.2", 5000);
        let at_relay_host = listen(&r, "10.201.2.1", 6000);
        std::thread::sleep(Duration::from_millis(300));
        const SENDER: &str = "import socket,sys,time\n\
            for src,dst in ((4000,30000),(4001,30004)):\n\
            \x20   s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
            \x20   s.bind(('10.201.1.2',src))\n\
            \x20   for i in range(5):\n\
            \x20       s.sendto(bytes([0x80,0,0,i])+b'rtp',('10.201.1.1',dst)); time.sleep(0.05)\n";
        sh(Some(&a), &["python3", "-c", SENDER]);
        let got = |child: std::process::Child| {
            let out = child.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        // Byte for byte, and from the relay's other port, not from A.
        assert_eq!(got(at_b), "80000000727470 10.201.1.1 30002");
        assert_eq!(got(at_relay_host), "80000000727470 10.201.1.1 30006");
        drop(lab);
    }
}
