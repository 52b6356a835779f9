//! CPU accounting of a benchmark run: this process and its threads by
//! role, the whole machine, and the kernel's UDP receive-buffer drops.

use std::time::Instant;
use std::{fs, mem};

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), ns.
// Unsafe: the clock_gettime(2) FFI call.
#[allow(unsafe_code)]
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live timespec the call writes.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of the whole process, ns.
// Unsafe: the getrusage(2) FFI call and its zeroed C struct.
#[allow(unsafe_code)]
pub fn process_cpu_ns() -> u64 {
    // SAFETY: rusage is a plain C struct for which all-zero bytes are
    // valid; getrusage writes it.
    let mut usage: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: a live rusage for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// CPU time of the process (`getrusage`, user + system) and of its
/// threads by role (ns, from each thread's `schedstat`: its run time,
/// exact, where `stat`'s jiffies are sampled), busy jiffies (USER_HZ,
/// 100/s) of the whole machine, and the kernel's UDP receive-buffer drop
/// counter. The roles: the runtime's threads (named with the prefix given
/// to [`Usage::sample`]), the generator's `gen-send` and `gen-recv`, and
/// the rest (`main`).
pub struct Usage {
    at: Instant,
    process: u64,
    rt: u64,
    send: u64,
    recv: u64,
    main: u64,
    busy: u64,
    steal: u64,
    rcvbuf_errors: u64,
}

/// Over the window, % of one core.
pub struct CpuShare {
    pub process_pct: f64,
    pub rt_pct: f64,
    pub send_pct: f64,
    pub recv_pct: f64,
    pub main_pct: f64,
    /// The machine's busy time outside this process's threads.
    pub other_pct: f64,
    pub steal_pct: f64,
    pub rcvbuf_errors: u64,
}

impl Usage {
    /// Samples now; threads whose name starts with `rt_prefix` count as
    /// the runtime's.
    pub fn sample(rt_prefix: &str) -> Usage {
        let at = Instant::now();
        let (busy, steal) = machine_busy();
        let mut u = Usage {
            at,
            process: process_cpu_ns(),
            rt: 0,
            send: 0,
            recv: 0,
            main: 0,
            busy,
            steal,
            rcvbuf_errors: udp_rcvbuf_errors(),
        };
        let Ok(tasks) = fs::read_dir("/proc/self/task") else {
            return u;
        };
        for task in tasks.flatten() {
            let (Ok(name), Ok(sched)) = (
                fs::read_to_string(task.path().join("comm")),
                fs::read_to_string(task.path().join("schedstat")),
            ) else {
                continue;
            };
            let ns: u64 = sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            match name.trim_end() {
                n if n.starts_with(rt_prefix) => u.rt += ns,
                "gen-send" => u.send += ns,
                "gen-recv" => u.recv += ns,
                _ => u.main += ns,
            }
        }
        u
    }

    pub fn minus(&self, before: &Usage) -> CpuShare {
        let secs = self.at.duration_since(before.at).as_secs_f64();
        let pct = |ns: u64| ns as f64 / 1e9 / secs * 100.0;
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let (rt, send, recv, main) = (
            d(self.rt, before.rt),
            d(self.send, before.send),
            d(self.recv, before.recv),
            d(self.main, before.main),
        );
        // Jiffies to nanoseconds.
        let busy = d(self.busy, before.busy) * 10_000_000;
        CpuShare {
            process_pct: pct(d(self.process, before.process)),
            rt_pct: pct(rt),
            send_pct: pct(send),
            recv_pct: pct(recv),
            main_pct: pct(main),
            other_pct: pct(busy.saturating_sub(rt + send + recv + main)),
            steal_pct: pct(d(self.steal, before.steal) * 10_000_000),
            rcvbuf_errors: d(self.rcvbuf_errors, before.rcvbuf_errors),
        }
    }
}

/// Busy jiffies of the whole machine (all but idle and iowait), and the
/// part of them the hypervisor stole.
pub fn machine_busy() -> (u64, u64) {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // user nice system idle iowait irq softirq steal
            let busy = f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?;
            Some((busy, f.get(7).copied().unwrap_or(0)))
        })
        .unwrap_or((0, 0))
}

/// The kernel's `Udp: RcvbufErrors` counter (datagrams dropped for a full
/// receive buffer, machine-wide); 0 if unreadable.
pub fn udp_rcvbuf_errors() -> u64 {
    let Ok(s) = fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let udp: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    let [names, values] = udp[..] else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
