//! CPU time and memory of a process, from /proc (Linux).

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU time used so far, seconds (all threads, user + system).
    pub cpu_s: f64,
    /// Resident set size, bytes.
    pub rss: u64,
}

/// CPU time of the live threads of `pid`, nanoseconds: the sum of the first field of
/// each `/proc/PID/task/*/schedstat`. Finer than [`usage`]'s 10 ms ticks, for bursts
/// whose whole cost is a few ticks; threads that exit meanwhile are not counted, so
/// it fits a server whose threads live as long as it does.
pub fn thread_cpu_ns(pid: u32) -> Option<ThreadCpu> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut cpu = ThreadCpu::default();
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        cpu.all += ns;
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(MEDIA_THREADS) {
            cpu.media += ns;
        } else if comm.starts_with(PREPARING_THREADS) {
            cpu.preparing += ns;
        }
    }
    (cpu.all > 0).then_some(cpu)
}

/// What wishd names its media worker threads (`wishd-media-0`, …).
const MEDIA_THREADS: &str = "wishd-media";
/// What wishd names the threads that make DTLS sessions ahead of offers.
const PREPARING_THREADS: &str = "wishd-dtls-prep";

/// A process's CPU time, ns, from its threads' `schedstat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCpu {
    /// Every thread's.
    pub all: u64,
    /// wishd's media workers' (0 for another server).
    pub media: u64,
    /// wishd's threads that make DTLS sessions ahead of offers (0 for another
    /// server). The rest is its HTTP threads'.
    pub preparing: u64,
}

/// Reads `/proc/PID` (`None`: the process is gone). `pid` `None` means this process.
///
/// CPU time is `utime + stime` from `stat` (clock ticks of 10 ms), which, unlike the
/// per-thread `schedstat` figures, keeps the time of threads that have exited.
pub fn usage(pid: Option<u32>) -> Option<Usage> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let cpu_s = parse_stat_cpu(&stat)?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Usage {
        cpu_s,
        rss: parse_rss(&status).unwrap_or(0),
    })
}

/// `utime + stime` of a `/proc/PID/stat` line, in seconds (USER_HZ is 100 on Linux).
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may contain spaces: skip past ")".
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" field 0 is state (stat field 3); utime and stime are stat fields 14, 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Time on a CPU and time runnable but waiting for one, summed over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sched {
    /// Seconds on a CPU.
    pub run_s: f64,
    /// Seconds ready to run, waiting in a run queue.
    pub wait_s: f64,
}

/// [`Sched`] of the threads of `pid` whose name starts with `prefix` (all threads
/// when none does), from `/proc/PID/task/TID/schedstat`. Threads that exited since
/// an earlier reading are missing from a later one, so compare readings of threads
/// that live through the window (a server's worker threads).
pub fn sched(pid: u32, prefix: &str) -> Option<Sched> {
    let dir = format!("/proc/{pid}/task");
    let mut all = Sched::default();
    let mut named = Sched::default();
    let mut any_named = false;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let path = entry.path();
        let Some(s) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|t| parse_schedstat(&t))
        else {
            continue;
        };
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        all.run_s += s.run_s;
        all.wait_s += s.wait_s;
        if name.starts_with(prefix) {
            any_named = true;
            named.run_s += s.run_s;
            named.wait_s += s.wait_s;
        }
    }
    Some(if any_named { named } else { all })
}

/// The first two fields of a `schedstat` line (nanoseconds), in seconds.
pub fn parse_schedstat(text: &str) -> Option<Sched> {
    let mut f = text.split_whitespace();
    let run: u64 = f.next()?.parse().ok()?;
    let wait: u64 = f.next()?.parse().ok()?;
    Some(Sched {
        run_s: run as f64 / 1e9,
        wait_s: wait as f64 / 1e9,
    })
}

/// The whole host's CPU time, summed over CPUs, in clock ticks (`/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// All ticks: user, nice, system, idle, iowait, irq, softirq and steal.
    pub total: u64,
    /// Ticks the hypervisor ran something else while a virtual CPU wanted to run.
    pub steal: u64,
}

impl HostCpu {
    /// The share of all CPUs' time the hypervisor took between `self` and `later`,
    /// percent (`None` when no time passed).
    pub fn steal_pct(&self, later: &HostCpu) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)?;
        let steal = later.steal.saturating_sub(self.steal);
        Some(steal as f64 * 100.0 / total as f64)
    }
}

/// [`HostCpu`] now.
pub fn host_cpu() -> Option<HostCpu> {
    parse_host_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of a `/proc/stat` text. Guest time is already counted in user and
/// nice, so the first eight fields are the whole.
pub fn parse_host_cpu(stat: &str) -> Option<HostCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some(HostCpu {
        total: ticks.iter().sum(),
        steal: *ticks.get(7)?,
    })
}

/// `RcvbufErrors` of UDP from `/proc/net/snmp` (datagrams dropped because a socket's
/// receive buffer was full, anywhere on the host).
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_udp_counter(&snmp, "RcvbufErrors")
}

/// A named counter of the `Udp:` lines of `/proc/net/snmp`.
pub fn parse_udp_counter(snmp: &str, name: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let header = lines.next()?;
    let values = lines.next()?;
    let i = header.split_whitespace().position(|h| h == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let stat = "1234 (wishd (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(
            parse_rss("Name:\tw\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 0 3 9 7\n";
        assert_eq!(parse_udp_counter(snmp, "RcvbufErrors"), Some(7));
        let me = usage(None).expect("own /proc");
        assert!(me.rss > 0 && me.cpu_s >= 0.0);
        assert_eq!(
            parse_schedstat("2000000000 500000000 42\n"),
            Some(Sched {
                run_s: 2.0,
                wait_s: 0.5
            })
        );
        let stat = "cpu  100 0 50 800 0 0 10 40 0 0\ncpu0 50 0 25 400 0 0 5 20 0 0\n";
        let a = parse_host_cpu(stat).expect("a cpu line");
        assert_eq!(
            a,
            HostCpu {
                total: 1000,
                steal: 40
            }
        );
        let b = HostCpu {
            total: 1200,
            steal: 70,
        };
        assert_eq!(a.steal_pct(&b), Some(15.0));
        assert_eq!(a.steal_pct(&a), None);
        assert!(parse_host_cpu("cpu0 1 2 3\n").is_none());
        assert!(host_cpu().is_some_and(|h| h.total > 0));
        let own = sched(std::process::id(), "no thread has this name").expect("own tasks");
        assert!(own.run_s > 0.0, "{own:?}");
    }
}
