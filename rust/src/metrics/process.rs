//! The process_* metrics Prometheus' Go client exposes (its process
//! collector), read from /proc as that collector reads them.

use super::text::Text;

/// etcd's own os_fd_used and os_fd_limit (etcd samples them every 5 s; ketch at the scrape).
pub(super) fn render_os(t: &mut Text) {
    if let Some(max) = limit(libc::RLIMIT_NOFILE) {
        t.gauge("os_fd_limit", "The file descriptor limit.", max);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        t.gauge("os_fd_used", "The number of used file descriptors.", fds.count() as f64);
    }
}

pub(super) fn render(t: &mut Text) {
    let Some(stat) = Stat::read() else { return };
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
    t.counter_float(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        (stat.utime + stat.stime) / ticks,
    );
    if let Some(max) = limit(libc::RLIMIT_NOFILE) {
        t.gauge("process_max_fds", "Maximum number of open file descriptors.", max);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        t.gauge("process_open_fds", "Number of open file descriptors.", fds.count() as f64);
    }
    t.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", stat.rss_pages * page);
    if let Some(boot) = boot_time() {
        t.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot + stat.start_ticks / ticks,
        );
    }
    t.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", stat.vsize);
    if let Some(max) = limit(libc::RLIMIT_AS) {
        t.gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", max);
    }
}

/// The fields of /proc/self/stat the collector uses (proc(5): utime 14,
/// stime 15, starttime 22, vsize 23, rss 24).
struct Stat {
    utime: f64,
    stime: f64,
    start_ticks: f64,
    vsize: f64,
    rss_pages: f64,
}

impl Stat {
    fn read() -> Option<Stat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces.
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// The soft limit, as Go's collector reports it (+Inf when unlimited).
fn limit(resource: libc::__rlimit_resource_t) -> Option<f64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(resource, &raw mut rl) } != 0 {
        return None;
    }
    Some(if rl.rlim_cur == libc::RLIM_INFINITY { 1.844_674_407_370_955_2e19 } else { rl.rlim_cur as f64 })
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}
