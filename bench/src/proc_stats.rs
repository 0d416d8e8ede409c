//! What the kernel says about processes and the machine: CPU time and memory from `/proc`, the machine's load,
//! the fd limit, and waiting for a child with its resource usage.

use std::fs;
use std::time::Duration;

use anyhow::{Context, bail};

/// Clock ticks per second of the `/proc/<pid>/stat` CPU fields.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU time of one process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// utime + stime of the process itself.
    pub own: Duration,
    /// cutime + cstime: children it has waited for.
    pub children: Duration,
}

impl CpuTimes {
    pub fn of(pid: u32) -> anyhow::Result<CpuTimes> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
        // The command name (field 2) is in parentheses and may contain spaces: fields start after the last ')'.
        let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
        let field = |n: usize| -> anyhow::Result<f64> { Ok(fields.get(n - 3).context("short stat")?.parse::<f64>()?) };
        let tps = ticks_per_second();
        Ok(CpuTimes {
            own: Duration::from_secs_f64((field(14)? + field(15)?) / tps),
            children: Duration::from_secs_f64((field(16)? + field(17)?) / tps),
        })
    }
}

/// Memory of one process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Memory {
    /// VmHWM: peak resident set since start (or since [`reset_peak_rss`]), bytes.
    pub peak_rss: u64,
    /// VmRSS now, bytes.
    pub rss: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let status =
            fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("/proc/{pid}/status"))?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Memory { peak_rss: kib("VmHWM:"), rss: kib("VmRSS:") })
    }
}

/// Starts a new peak-RSS window for `pid` (writing 5 to `clear_refs` resets VmHWM to the current RSS).
pub fn reset_peak_rss(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Busy and total jiffies of all CPUs, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return MachineCpu::default() };
        let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        MachineCpu { busy: total - idle, total }
    }

    /// Share of all CPUs that was busy between `self` and `later`, in percent of the whole machine.
    pub fn busy_percent_until(&self, later: &MachineCpu) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 { 0.0 } else { 100.0 * later.busy.saturating_sub(self.busy) as f64 / total as f64 }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Raises the soft limit of open files to `wanted` (or the hard limit, if lower). Returns the new soft limit.
pub fn raise_fd_limit(wanted: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= wanted {
        return Ok(lim.rlim_cur);
    }
    lim.rlim_cur = wanted.min(lim.rlim_max);
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// How a waited-for child ended, and the CPU it and its waited-for descendants used.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    pub code: i32,
    /// user + system CPU of the child and every descendant it waited for.
    pub cpu: Duration,
}

/// Waits for child `pid` (blocking) with `wait4`, which also returns its resource usage.
pub fn wait_with_usage(pid: u32) -> anyhow::Result<Reaped> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to status and usage.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {err}");
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    Ok(Reaped { code, cpu: tv(usage.ru_utime) + tv(usage.ru_stime) })
}

/// A child process run to completion.
#[derive(Debug, Clone, Copy)]
pub struct ChildRun {
    /// From spawn to exit.
    pub wall: Duration,
    pub code: i32,
    /// CPU of the process itself.
    pub own_cpu: Duration,
    /// CPU of the descendants it waited for (e.g. the recorded command).
    pub children_cpu: Duration,
    /// Largest VmHWM seen while it ran.
    pub peak_rss: u64,
}

/// Spawns `cmd` and waits for it (blocking), sampling its CPU and memory while it runs.
pub fn run_measured(mut cmd: std::process::Command) -> anyhow::Result<ChildRun> {
    let start = std::time::Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut children, mut peak) = (Duration::ZERO, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(c) = CpuTimes::of(pid) {
                    children = children.max(c.children);
                }
                if let Ok(m) = Memory::of(pid) {
                    peak = peak.max(m.peak_rss);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (children, peak)
        })
    };
    let reaped = wait_with_usage(pid);
    let wall = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (children_cpu, peak_rss) = sampler.join().expect("sampler thread");
    let reaped = reaped?;
    Ok(ChildRun { wall, code: reaped.code, own_cpu: reaped.cpu.saturating_sub(children_cpu), children_cpu, peak_rss })
}

/// Bytes a process has passed to `write` and similar calls (`wchar` of `/proc/<pid>/io`).
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok())
}

/// Waits until process `pid` uses less than `busy` of a core for `calm` whole seconds in a row, or `limit`
/// passed; returns how long it took and whether it became quiet.
pub async fn wait_quiet(pid: u32, busy: f64, calm: u32, limit: Duration) -> (Duration, bool) {
    let start = std::time::Instant::now();
    let mut last = CpuTimes::of(pid).map(|c| c.own).unwrap_or_default();
    let mut quiet_seconds = 0;
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = CpuTimes::of(pid).map(|c| c.own).unwrap_or_default();
        let used = now.saturating_sub(last).as_secs_f64();
        last = now;
        quiet_seconds = if used < busy { quiet_seconds + 1 } else { 0 };
        if quiet_seconds >= calm {
            return (start.elapsed(), true);
        }
    }
    (start.elapsed(), false)
}

/// CPU used by this process so far (all threads).
pub fn own_cpu() -> Duration {
    // SAFETY: zeroed rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A process's CPU and memory over a measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub wall: Duration,
    pub peak_rss: u64,
}

/// Measures a process (the server, asciinema) over a window: resets its peak RSS at the start.
pub struct Window {
    process: Option<ProcessWatch>,
    machine: MachineCpu,
    bench_cpu: Duration,
    start: std::time::Instant,
    load_start: f64,
}

/// A thread that keeps a process's latest CPU time and largest peak RSS, so that both survive its exit.
struct ProcessWatch {
    before: CpuTimes,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(CpuTimes, u64)>,
}

impl ProcessWatch {
    fn start(pid: u32) -> anyhow::Result<ProcessWatch> {
        reset_peak_rss(pid);
        let before = CpuTimes::of(pid)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut cpu, mut peak) = (before, 0);
                loop {
                    // Read once more after the stop, so that the end of the window counts.
                    let last = stop.load(std::sync::atomic::Ordering::Relaxed);
                    if let Ok(c) = CpuTimes::of(pid) {
                        cpu.own = cpu.own.max(c.own);
                    }
                    if let Ok(m) = Memory::of(pid) {
                        peak = peak.max(m.peak_rss);
                    }
                    if last {
                        return (cpu, peak);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Ok(ProcessWatch { before, stop, thread })
    }

    fn finish(self, wall: Duration) -> Usage {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (cpu, peak_rss) = self.thread.join().unwrap_or((self.before, 0));
        // Its own CPU only: children it reaps during the window (asciinema's command) are not its work.
        Usage { cpu: cpu.own.saturating_sub(self.before.own), wall, peak_rss }
    }
}

/// What a [`Window`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowStats {
    /// The measured process; `None` for a window over the machine alone.
    pub process: Option<Usage>,
    /// Share of the whole machine (all cores) that was busy, percent.
    pub machine_busy: f64,
    /// CPU the bench process itself used (its clients), over the window.
    pub bench_cpu: Duration,
    pub load_start: f64,
    pub load_end: f64,
}

impl Window {
    /// A window over process `pid` (its CPU and peak RSS) and the machine.
    pub fn start(pid: u32) -> anyhow::Result<Window> {
        let mut w = Window::machine_only();
        w.process = Some(ProcessWatch::start(pid)?);
        Ok(w)
    }

    /// A window over the machine's load and this process's CPU only.
    pub fn machine_only() -> Window {
        Window {
            process: None,
            machine: MachineCpu::now(),
            bench_cpu: own_cpu(),
            start: std::time::Instant::now(),
            load_start: load_average(),
        }
    }

    pub fn finish(self) -> WindowStats {
        let wall = self.start.elapsed();
        WindowStats {
            process: self.process.map(|p| p.finish(wall)),
            machine_busy: self.machine.busy_percent_until(&MachineCpu::now()),
            bench_cpu: own_cpu().saturating_sub(self.bench_cpu),
            load_start: self.load_start,
            load_end: load_average(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let cpu = CpuTimes::of(pid).unwrap();
        assert!(cpu.own <= Duration::from_secs(3600));
        let mem = Memory::of(pid).unwrap();
        assert!(mem.rss > 0 && mem.peak_rss >= mem.rss);
        assert!(MachineCpu::now().total > 0);
    }
}
