//! How busy the machine is with other programs, read from Linux's `/proc`: the default thread count
//! leaves them the cores they are using, since a thread that shares its core with another program
//! holds up every product it has a part of. Elsewhere nothing is read and every core is used.

use std::fs;

/// The machine's and this process's CPU time at one moment, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Ticks of all CPUs together, and the busy ones among them.
    total: u64,
    busy: u64,
    /// Ticks this process has run (user and system).
    own: u64,
}

impl Reading {
    /// Now, or `None` where `/proc` cannot be read.
    pub fn now() -> Option<Reading> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let own = fs::read_to_string("/proc/self/stat").ok()?;
        Reading::parse(&stat, &own)
    }

    /// From the texts of `/proc/stat` and `/proc/self/stat`.
    fn parse(stat: &str, own: &str) -> Option<Reading> {
        let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal (guest time is counted in user already).
        let ticks: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
        let total = user + nice + system + idle + iowait + irq + softirq + steal;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Reading {
            total,
            busy: total - idle - iowait,
            own: utime + stime,
        })
    }

    /// The cores other programs kept busy between `earlier` and this reading, of `cores` in all.
    pub fn others_since(&self, earlier: &Reading, cores: usize) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        if total == 0 {
            return None;
        }
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let own = self.own.saturating_sub(earlier.own) as f64;
        let wall = total as f64 / cores.max(1) as f64;
        Some(((busy - own) / wall).max(0.0))
    }
}

/// The default thread count, re-read at every call of [`ThreadsBeside::reread`]: the cores that other
/// programs left idle since the call before.
#[derive(Debug, Clone)]
pub struct ThreadsBeside {
    cores: usize,
    last: Reading,
}

impl ThreadsBeside {
    /// Starts measuring now, for a pool of `cores` threads; `None` where `/proc` cannot be read.
    pub fn start(cores: usize) -> Option<ThreadsBeside> {
        Some(ThreadsBeside {
            cores,
            last: Reading::now()?,
        })
    }

    /// The threads to use until the next call.
    pub fn reread(&mut self) -> Option<usize> {
        let now = Reading::now()?;
        let others = now.others_since(&self.last, self.cores);
        self.last = now;
        Some(threads_beside(self.cores, others?))
    }
}

/// Threads to use of `cores` when other programs keep `others` cores busy: the cores they leave, at
/// least one.
pub fn threads_beside(cores: usize, others: f64) -> usize {
    let free = cores as f64 - others;
    (free.round().max(1.0) as usize).min(cores.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
    const OWN: &str = "4242 (mlp (x) y) R 1 1 1 0 -1 4194304 100 0 0 0 30 10 0 0 20 0 3 0 1";

    #[test]
    fn readings_parse_proc() {
        let r = Reading::parse(STAT, OWN).unwrap();
        assert_eq!(
            r,
            Reading {
                total: 1000,
                busy: 150,
                own: 40
            }
        );
        assert_eq!(Reading::parse("intr 1 2", OWN), None);
    }

    #[test]
    fn others_are_the_busy_time_that_is_not_ours() {
        let earlier = Reading {
            total: 0,
            busy: 0,
            own: 0,
        };
        // Two cores for 100 ticks each: we ran 100 ticks, someone else 100: one core is theirs.
        let later = Reading {
            total: 200,
            busy: 200,
            own: 100,
        };
        assert_eq!(later.others_since(&earlier, 2), Some(1.0));
        assert_eq!(threads_beside(2, 1.0), 1);
        // An idle machine but for us.
        let idle = Reading {
            total: 200,
            busy: 190,
            own: 190,
        };
        assert_eq!(idle.others_since(&earlier, 2), Some(0.0));
        assert_eq!(threads_beside(2, 0.0), 2);
        assert_eq!(threads_beside(2, 0.3), 2);
        assert_eq!(threads_beside(8, 2.6), 5);
        assert_eq!(threads_beside(2, 5.0), 1);
        assert_eq!(later.others_since(&later, 2), None);
    }
}
