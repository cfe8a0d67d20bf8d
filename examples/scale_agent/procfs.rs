//! What `/proc` says about a process: VmRSS and VmHWM, CPU time by
//! thread name, and a bounded sampler of VmRSS over time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    /// VmRSS: resident now.
    pub rss: u64,
    /// VmHWM: the most ever resident.
    pub hwm: u64,
}

/// VmRSS and VmHWM of `pid` (`None` once it is gone).
pub fn mem(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Mem {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// CPU seconds (user + system) of each thread of `pid`, summed by thread
/// name (`tokio-runtime-w` for both runtime workers, `dataplane`, ...).
pub fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    // USER_HZ is 100 on every Linux architecture we run on.
    const TICKS: f64 = 100.0;
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After "pid (comm) ": state is field 3, utime 14, stime 15.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            *out.entry(name).or_insert(0.0) += (u + s) / TICKS;
        }
    }
    out
}

/// `b - a` for each thread name.
pub fn cpu_between(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Formats a thread → seconds map: `dataplane 0.41 s, tokio-runtime-w 1.20 s`.
pub fn cpu_text(m: &BTreeMap<String, f64>) -> String {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1));
    v.iter()
        .map(|(k, s)| format!("{k} {s:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Samples VmRSS of a process every `every`, for at most `limit`.
pub struct Sampler {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid`; times are since `t0`.
    pub fn start(pid: u32, t0: Instant, every: Duration, limit: Duration) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + limit;
            while !st.load(Ordering::Relaxed) && Instant::now() < end {
                match mem(pid) {
                    Some(m) => s.lock().unwrap().push((t0.elapsed(), m.rss)),
                    None => return,
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The samples so far: (time since t0, VmRSS KiB).
    pub fn samples(&self) -> Vec<(Duration, u64)> {
        self.samples.lock().unwrap().clone()
    }

    /// The sample closest before `at`.
    pub fn at(&self, at: Duration) -> Option<u64> {
        let s = self.samples.lock().unwrap();
        s.iter().rev().find(|(t, _)| *t <= at).map(|(_, r)| *r)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
