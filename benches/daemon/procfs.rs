//! Where the machine's CPU went, and the daemon's memory, from /proc.

/// The programs CPU is counted for, in the order of `Cpu::seconds`.
pub const PROGRAMS: [&str; 4] = ["postgres", "daemon", "redis", "fake (bench)"];

/// CPU seconds used so far by every PostgreSQL process, the daemon, Redis,
/// and this process (which also runs the fake platform).
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub seconds: [f64; 4],
}

impl Cpu {
    pub fn take(daemon: u32) -> Self {
        let ticks = 100.0; // USER_HZ on Linux
        let mut cpu = Cpu::default();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            // utime and stime, fields 14 and 15 of stat(5).
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let slot = if comm == "postgres" {
                0
            } else if pid == daemon {
                1
            } else if comm.starts_with("redis-server") {
                2
            } else if pid == me {
                3
            } else {
                continue;
            };
            cpu.seconds[slot] += (field(11) + field(12)) / ticks;
        }
        cpu
    }

    /// CPU milliseconds per refresh since `before`.
    pub fn ms_per(&self, before: &Cpu, refreshes: usize) -> [f64; 4] {
        let mut ms = [0.0; 4];
        for (i, slot) in ms.iter_mut().enumerate() {
            *slot = (self.seconds[i] - before.seconds[i]) * 1000.0 / refreshes.max(1) as f64;
        }
        ms
    }
}

/// A field of /proc/PID/status in KiB (VmRSS now, VmHWM its peak).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
