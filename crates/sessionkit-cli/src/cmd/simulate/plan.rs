//! The workload: agents, their cron jobs, when each run fires, and which runs hang.

use std::time::Duration;

/// Everything that decides a simulation's workload; workers get it as JSON.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Plan {
    pub(crate) agents: usize,
    pub(crate) cron_jobs: usize,
    /// How many times each cron job fires.
    pub(crate) fires: usize,
    /// The accelerated day: every run fires within this many milliseconds.
    pub(crate) span_ms: u64,
    /// The registry's cap; it is filled to the cap before the first run.
    pub(crate) max_entries: usize,
    /// Locks held longer are revoked by the watchdog (ours) or released by it (naive).
    pub(crate) max_hold_ms: u64,
    /// Every this many runs, one hangs while it holds its agent's main-session lock.
    pub(crate) hang_every: usize,
    /// The simulated model call, released from the lock: between these many milliseconds.
    pub(crate) model_ms: (u64, u64),
    /// Stale locks a crashed predecessor left before the start.
    pub(crate) leftover_locks: usize,
    pub(crate) seed: u64,
}

impl Plan {
    /// The default run (`quick`: the short one CI runs).
    pub(crate) fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                agents: 6,
                cron_jobs: 10,
                fires: 2,
                span_ms: 1_500,
                max_entries: 200,
                // Generous, so that an ordinary hold on a loaded machine is never revoked.
                max_hold_ms: 500,
                hang_every: 40,
                model_ms: (2, 8),
                leftover_locks: 100,
                seed: 1,
            }
        } else {
            Plan {
                agents: 6,
                cron_jobs: 50,
                fires: 4,
                span_ms: 10_000,
                max_entries: 500,
                max_hold_ms: 1_000,
                hang_every: 100,
                model_ms: (5, 20),
                leftover_locks: 1_000,
                seed: 1,
            }
        }
    }

    pub(crate) fn runs(&self) -> usize {
        self.agents * self.cron_jobs * self.fires
    }

    pub(crate) fn max_hold(&self) -> Duration {
        Duration::from_millis(self.max_hold_ms)
    }

    /// How long a hung run sleeps holding the lock: well past the max hold.
    pub(crate) fn hang(&self) -> Duration {
        Duration::from_millis(self.max_hold_ms * 3)
    }

    /// Every run of the plan, in firing order.
    ///
    /// Cron jobs fire on a few shared minute marks (as `0 * * * *` schedules do), so many
    /// runs start at the same instant: the storm that broke the original.
    pub(crate) fn fires_in_order(&self) -> Vec<Fire> {
        let period = self.span_ms / self.fires.max(1) as u64;
        let marks = 5u64;
        let mut rng = Rng(self.seed);
        let mut all = Vec::with_capacity(self.runs());
        for agent in 0..self.agents {
            for job in 0..self.cron_jobs {
                let mark = job as u64 % marks;
                for fire in 0..self.fires {
                    let at_ms = fire as u64 * period + mark * period / marks;
                    let (lo, hi) = self.model_ms;
                    let model_ms = lo + rng.next() % (hi - lo + 1);
                    all.push(Fire {
                        agent,
                        job,
                        fire,
                        at_ms,
                        model_ms,
                        hang: false,
                    });
                }
            }
        }
        all.sort_by_key(|f| (f.at_ms, f.agent, f.job, f.fire));
        // Hangs are spread evenly and never among the last runs, so the run ends on time.
        let n = all.len();
        if self.hang_every > 0 {
            let mut i = self.hang_every / 2;
            while i < n.saturating_sub(n / 5) {
                all[i].hang = true;
                i += self.hang_every;
            }
        }
        all
    }
}

/// One run of one cron job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Fire {
    pub(crate) agent: usize,
    pub(crate) job: usize,
    pub(crate) fire: usize,
    /// When it fires, after the start.
    pub(crate) at_ms: u64,
    pub(crate) model_ms: u64,
    pub(crate) hang: bool,
}

impl Fire {
    /// The run's key in the registry.
    pub(crate) fn key(&self) -> String {
        format!("agent:{}:cron:{}:run:{}", self.agent, self.job, self.fire)
    }

    /// The run's session id (and transcript name).
    pub(crate) fn session_id(&self) -> String {
        format!("run-{}-{}-{}", self.agent, self.job, self.fire)
    }
}

/// The key of an agent's main session, which every run of the agent announces into.
pub(crate) fn main_key(agent: usize) -> String {
    format!("agent:{agent}:main")
}

/// The session id of an agent's main session.
pub(crate) fn main_session(agent: usize) -> String {
    format!("main-{agent}")
}

/// splitmix64: small, seedable, and the same on every machine.
#[derive(Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_is_planned_once_with_hangs_spread_and_none_at_the_end() {
        let plan = Plan::new(true);
        let fires = plan.fires_in_order();
        assert_eq!(fires.len(), plan.runs());
        let mut keys: Vec<String> = fires.iter().map(Fire::key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), plan.runs());
        let hangs: Vec<usize> = (0..fires.len()).filter(|&i| fires[i].hang).collect();
        assert_eq!(hangs, [20, 60]);
        assert!(fires.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(fires.iter().all(|f| f.at_ms < plan.span_ms));
    }
}
