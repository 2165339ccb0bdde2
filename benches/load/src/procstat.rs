//! CPU time and memory of a process from `/proc` (Linux).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// User + system CPU time of every thread of `pid` so far.
pub fn cpu_time(pid: u32, ticks: u64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after its closing parenthesis start
    // with field 3 (state). utime is field 14, stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: field {n} missing"))?
            .parse::<u64>()
            .map_err(|e| anyhow::anyhow!("/proc/{pid}/stat: field {n}: {e}"))
    };
    let t = field(14)? + field(15)?;
    Ok(Duration::from_secs_f64(t as f64 / ticks as f64))
}

/// `(VmRSS, VmHWM)` of `pid` in bytes.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((kb("VmRSS:"), kb("VmHWM:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let ticks = clock_ticks();
        assert!(cpu_time(pid, ticks).is_ok());
        let (rss, hwm) = memory(pid).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }
}
