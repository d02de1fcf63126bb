//! Reading a process's resource use from `/proc`: resident memory and CPU time, of one process
//! or summed over several (the workers or nodes of a cluster), and a process's children.

use std::time::Duration;

/// Resident set size of `pid` in bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of `pid` (or of this process with `None`), at the kernel's tick
/// resolution (10 ms with the usual 100 Hz): measure over runs of seconds.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or("/proc/self/stat".to_owned(), |pid| {
        format!("/proc/{pid}/stat")
    });
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The summed RSS of `pids`: `None` when there are none or one cannot be read (a process
/// that exited would make the sum a different quantity).
pub fn rss_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss(pid)).sum()
}

/// The summed CPU time of `pids`: `None` when there are none or one cannot be read.
pub fn cpu_time_sum(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_time(Some(pid))).sum()
}

/// The pids of `pid`'s children, from `/proc/PID/task/*/children` or, where the kernel lacks
/// that file, from the parent field of every `/proc/*/stat`; sorted.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut readable = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                readable = true;
                found.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    if !readable {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // After the command in parentheses: state, then the parent's pid.
            let parent = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if parent == Some(pid) {
                found.push(child);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Machine-wide CPU time so far: (all, stolen by the hypervisor), in ticks. Stolen time is
/// when a virtual CPU was ready to run but the host ran something else: latency tails and CPU
/// figures from such stretches are the host's, not the server's.
pub fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let steal = *fields.get(7)?;
    Some((fields.iter().take(8).sum(), steal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_finds_a_child_and_sums_need_every_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let found = children(std::process::id());
        let me = std::process::id();
        let summed = cpu_time_sum(&[me, child.id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(summed.is_some());
        assert!(rss_sum(&[me]).is_some_and(|rss| rss > 0));
        assert_eq!(rss_sum(&[]), None);
        // A pid that cannot exist (above the kernel's pid_max limit).
        assert_eq!(cpu_time_sum(&[me, u32::MAX]), None);
    }
}
