//! The thread governor ([`Governor`]): whether a generation step runs on the whole pool or on
//! the calling thread alone, chosen by timing both (each way judged by the [`median`] of its
//! latest steps).

/// Chooses, step by step, whether a one-token (generation) step runs on the whole thread
/// pool or on the calling thread alone, by timing both: when another process keeps one of
/// the cores busy, a step split across the pool waits for the worker the scheduler has put
/// aside (two threads fell below one thread's speed here), and one thread is then faster.
/// The way in use is timed on every step, the other one on one step (a probe) every
/// [`Governor::PROBE_EVERY`] steps, so the choice follows the load both ways; each probe that
/// confirms the way in use doubles that interval, up to [`Governor::PROBE_MAX`], and one that
/// changes it sets it back. A probe on the slow way costs one step's difference (under a
/// busy neighbour a pool step took 7.5-14.6 ms against 5.5-6.7 ms alone for SmolLM2: 1.5 to
/// 3.5 % of a generation at one probe of two steps every 64, as probes were until
/// 2026-12-06, half that now; one step is enough, as a slow step only confirms the way in
/// use, whose median of [`Governor::WINDOW`] steps a spike does not move); the back-off
/// makes that a few tenths of a percent on a steady machine, and a change of load is still
/// followed within [`Governor::PROBE_MAX`] steps (two seconds here; see below for probes
/// put off on the kernel's word). Each way is judged by the median of its last
/// [`Governor::WINDOW`] steps, and the faster median wins: a first version compared smoothed
/// means, and this VM's occasional slow step sent an idle machine's generation to one thread
/// for 64 steps at a time (6 to 25 % slower); medians are not moved by such a step. A later version also wanted one thread 10 % faster: with a busy neighbour
/// the pool was then kept at 5 % slower than one thread (0.93-0.96x of one thread's speed
/// over 4 rounds, against 1.01-1.06x without the margin; no difference on an idle machine).
///
/// Timing alone has to run the pool to learn that it is slow: a generation that starts
/// beside a busy core ran its first two steps and a probe on the pool, which kept it 1-3 %
/// below one thread's speed (the Qwen3 shape at 0.97x). The kernel already knows: before the
/// model's first generation step, and before each probe of the pool while one thread is in
/// use, the governor asks [`crowded`] whether the machine has a core free for the pool's
/// workers. Where it has none, the first step runs on one thread (a wrong answer there costs
/// two steps: the probe at the third asks again), and a probe is put off by
/// [`Governor::PROBE_EVERY`] steps, at most [`Governor::PUT_OFF_MAX`] times in a row: a
/// wrong answer delays the pool's return by at most that many intervals of 64 steps (probes
/// at least every 449 steps once they are spaced out). The answer only spares steps on the
/// pool: the pool is used only once measured faster. A neighbour that starts while the model
/// already runs on the pool is seen by the timing (the pool's median crosses one thread's
/// within a few steps), and the probes after it are put off. Deciding layer by layer
/// instead (probes a layer long) was tried and dropped: a worker woken for a one-layer probe
/// runs it on its wake-up credit before the scheduler shares its core again, so under a busy
/// neighbour such probes looked fast, and the pool was taken up and left again over and over
/// (SmolLM2 at 0.96-0.97x of one thread against 0.99x a step at a time).
#[derive(Debug)]
pub(super) struct Governor {
    step: u64,
    /// The latest step times of each way, `[pool, alone]`, oldest first.
    times: [Vec<f64>; 2],
    /// The step of the next (or current) probe, one step on the way not in use.
    next_probe: u64,
    /// Steps from one probe to the next.
    interval: u64,
    /// Whether the way in use is one thread alone.
    alone: bool,
    /// Probes of the pool put off in a row because the machine was crowded.
    put_off: u32,
}

impl Default for Governor {
    fn default() -> Self {
        Self {
            step: 0,
            times: [Vec::new(), Vec::new()],
            // The first probe early: the pool's first steps include waking its workers.
            next_probe: 3,
            interval: Self::PROBE_EVERY,
            alone: false,
            put_off: 0,
        }
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => s.get(n / 2).copied(),
        _ => Some((s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0),
    }
}

impl Governor {
    const PROBE_EVERY: u64 = 64;
    const PROBE_MAX: u64 = 256;
    const WINDOW: usize = 8;
    /// Probes of the pool put off in a row, at most, on the word of [`crowded`] (each by
    /// [`Self::PROBE_EVERY`] steps): a probe runs at least every `PROBE_MAX + PUT_OFF_MAX *
    /// PROBE_EVERY + 1` steps (449) whatever it says.
    const PUT_OFF_MAX: u32 = 3;

    /// Whether the next step runs on the pool. `crowded` says whether the machine has no core
    /// free for the pool's workers now (see [`crowded`]); it is asked only before a probe of
    /// the pool while one thread is in use, and before the model's first step, where it can
    /// spare the costly way's steps.
    pub(super) fn parallel(&mut self, mut crowded: impl FnMut() -> bool) -> bool {
        self.step += 1;
        if self.step == 1 && crowded() {
            // A busy machine from the start: one thread until the pool is measured.
            self.alone = true;
        }
        let [pool, alone] = &self.times;
        let alone_faster = match (median(pool), median(alone)) {
            (Some(p), Some(a)) => a < p,
            // Until both ways are measured, the way in use stays.
            _ => self.alone,
        };
        // A probe is one step on the way not in use: under a busy neighbour each step on the
        // pool is the costly one, and a single step cannot send the choice the wrong way (a
        // slow step only confirms the way in use; the way in use is judged by a median).
        if self.probing() {
            if self.alone && self.put_off < Self::PUT_OFF_MAX && crowded() {
                // No core for the pool now: put the probe off rather than pay for a step
                // that would only confirm one thread.
                self.put_off += 1;
                self.next_probe = self.step.saturating_add(Self::PROBE_EVERY);
                return false;
            }
            self.put_off = 0;
            return self.alone;
        }
        if alone_faster != self.alone {
            // The way in use changed (the load did): probe again soon.
            self.alone = alone_faster;
            self.interval = Self::PROBE_EVERY;
            self.put_off = 0;
            self.next_probe = self.step.saturating_add(self.interval);
        } else if self.step == self.next_probe.saturating_add(1) {
            // A probe just confirmed the way in use.
            self.interval = (self.interval * 2).min(Self::PROBE_MAX);
            self.next_probe = self.step.saturating_add(self.interval);
        }
        !self.alone
    }

    /// Whether the current step is a probe (`next_probe` stays on it until the step after).
    fn probing(&self) -> bool {
        self.step == self.next_probe
    }

    /// Records a step's time. A new probe replaces what was known of the other way (it may
    /// be minutes old).
    pub(super) fn record(&mut self, parallel: bool, secs: f64) {
        let probing = self.probing();
        let Some(times) = self.times.get_mut(usize::from(!parallel)) else {
            return;
        };
        if probing {
            times.clear();
        }
        times.push(secs);
        if times.len() > Self::WINDOW {
            times.remove(0);
        }
    }
}

/// Whether the machine has fewer idle cores than `workers` right now, by the kernel's word:
/// its runnable tasks (`/proc/loadavg`'s fourth field, the calling thread included) against
/// its online cores (`/sys/devices/system/cpu/online`). Called while the team's workers sleep
/// (one thread in use, or before the first step; the rayon pool's idle threads may still be
/// polling for work just after a prompt, a false "crowded" that the next probe corrects).
/// `false` where either cannot be read: the timing alone decides then. A hint, not a
/// verdict: [`Governor`] still measures the pool before it uses it, and probes it now and
/// then whatever this says.
pub(super) fn crowded(workers: usize) -> bool {
    // Both files are a line (sysfs reports 4096 bytes): a bounded read all the same.
    let read = |path: &str| {
        let bytes = crate::secure::fs::read_capped(std::path::Path::new(path), 4096).ok()?;
        String::from_utf8(bytes).ok()
    };
    let runnable = read("/proc/loadavg").as_deref().and_then(runnable);
    let online = read("/sys/devices/system/cpu/online")
        .as_deref()
        .and_then(cpu_count);
    match (runnable, online) {
        (Some(r), Some(n)) => r.saturating_add(workers) > n,
        _ => false,
    }
}

/// The runnable tasks in a `/proc/loadavg` text (`0.43 1.04 1.37 2/109 30513`: the `2`).
fn runnable(loadavg: &str) -> Option<usize> {
    let field = loadavg.split_ascii_whitespace().nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// The CPUs in a kernel CPU list (`0-3,5,7-8`: 7).
fn cpu_count(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?),
            None => {
                let one = part.parse::<usize>().ok()?;
                (one, one)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)?.checked_add(1)?)?;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::Governor;

    /// Runs `steps` steps, the pool taking `pool` seconds a step and one thread `alone`, the
    /// kernel's count saying a core is free; returns how many ran on the pool.
    fn drive(g: &mut Governor, steps: usize, pool: f64, alone: f64) -> usize {
        drive_crowded(g, steps, pool, alone, false)
    }

    /// Runs `steps` steps, the pool taking `pool` seconds a step and one thread `alone`, the
    /// kernel's count saying the machine is `crowded` or not; returns how many ran on the
    /// pool.
    fn drive_crowded(
        g: &mut Governor,
        steps: usize,
        pool: f64,
        alone: f64,
        crowded: bool,
    ) -> usize {
        let mut on_pool = 0;
        for _ in 0..steps {
            let p = g.parallel(|| crowded);
            g.record(p, if p { pool } else { alone });
            on_pool += usize::from(p);
        }
        on_pool
    }

    #[test]
    fn governor_follows_the_faster_way_both_ways() {
        let mut g = Governor::default();
        // Idle machine: the pool is twice as fast; only the probes run alone.
        let n = drive(&mut g, 256, 0.008, 0.016);
        assert!(n >= 256 - 2 - 2 * 4, "{n} of 256 steps on the pool");
        // A busy neighbour: the pool becomes slower than one thread, and is left within a
        // few steps (its smoothed time has to cross one thread's), then only probed.
        let n = drive(&mut g, 256, 0.020, 0.012);
        assert!(n <= 2 * 4 + 6, "{n} of 256 steps on the slow pool");
        // A neighbour that makes the pool only slightly slower: one thread is still chosen.
        let n = drive(&mut g, 256, 0.0126, 0.012);
        assert!(n <= 2 * 4 + 6, "{n} of 256 steps on the pool 5 % slower");
        // An idle machine whose steps are sometimes slow (one in 10 at 8x; a smoothed mean
        // then read 0.022 s, above one thread's 0.016): the pool stays.
        let mut g = Governor::default();
        let mut on_pool = 0;
        for i in 0..512 {
            let p = g.parallel(|| false);
            let spike = if i % 10 == 9 { 8.0 } else { 1.0 };
            g.record(p, spike * if p { 0.008 } else { 0.016 });
            on_pool += usize::from(p);
        }
        assert!(
            on_pool >= 512 - 2 - 2 * 8,
            "{on_pool} of 512 noisy steps on the pool"
        );
        // The neighbour stops: a probe sees it and the pool is used again.
        let n = drive(&mut g, 512, 0.008, 0.012);
        let limit = Governor::PROBE_MAX + 2 * 4;
        assert!(
            n >= 512 - usize::try_from(limit).unwrap_or(usize::MAX),
            "{n} of 512 steps back on the pool"
        );
    }

    #[test]
    fn governor_probes_less_while_the_load_stays() {
        // Idle machine: each probe confirms the pool, so they space out to one every
        // PROBE_MAX steps, of one step each (one every PROBE_EVERY would be 32 steps alone).
        let mut g = Governor::default();
        let n = drive(&mut g, 2048, 0.008, 0.016);
        assert!(
            n >= 2048 - (2048 / 256 + 3),
            "{n} of 2048 steps on the pool"
        );
        // A neighbour starts: one thread is chosen within a few steps (the pool's median
        // has to cross), and the pool is probed again PROBE_EVERY steps after the change.
        let alone = 40 - drive(&mut g, 40, 0.020, 0.012);
        assert!(alone >= 40 - 6, "{alone} of 40 steps alone");
        // It stops: that probe brings the pool back (about 30 steps later).
        let n = drive(&mut g, 128, 0.008, 0.012);
        assert!(n >= 128 - 40, "{n} of 128 steps back on the pool");
    }

    #[test]
    fn a_crowded_machine_spares_the_pool_steps_and_a_wrong_word_costs_little() {
        // A busy neighbour from the start, seen by the kernel's count: no step on the pool
        // in a generation of 128 tokens (against three on timing alone, below).
        let mut g = Governor::default();
        assert_eq!(drive_crowded(&mut g, 128, 0.020, 0.012, true), 0);
        // Over a long generation the pool is still probed now and then, after PUT_OFF_MAX
        // put-offs of PROBE_EVERY steps each (probes at steps 195, 516 and 965): a wrong word
        // cannot keep it off for good.
        let n = drive_crowded(&mut g, 1024, 0.020, 0.012, true);
        assert_eq!(n, 3, "{n} of 1024 crowded steps on the pool");
        // The word was wrong (the pool is faster): the next such probe brings the pool back,
        // and it stays.
        let mut g = Governor::default();
        let n = drive_crowded(&mut g, 1024, 0.008, 0.012, true);
        assert!(n >= 1024 - 256 - 8, "{n} of 1024 steps on the faster pool");
        // The neighbour stops: the next probe, no longer put off, brings the pool back.
        let mut g = Governor::default();
        drive_crowded(&mut g, 128, 0.020, 0.012, true);
        let n = drive_crowded(&mut g, 256, 0.008, 0.012, false);
        assert!(n >= 256 - 64 - 8, "{n} of 256 steps back on the pool");
        // An idle machine is not asked to prove it: the pool from the first step.
        let mut g = Governor::default();
        let n = drive_crowded(&mut g, 128, 0.008, 0.012, false);
        assert!(n >= 128 - 2, "{n} of 128 steps on the pool");
    }

    #[test]
    fn the_kernels_counts_are_read_or_refused() {
        assert_eq!(super::runnable("0.43 1.04 1.37 2/109 30513\n"), Some(2));
        assert_eq!(super::runnable("0.43 1.04 1.37 2 30513"), None);
        assert_eq!(super::runnable("0.43 1.04"), None);
        assert_eq!(super::runnable("a b c x/1 2"), None);
        assert_eq!(super::cpu_count("0-1\n"), Some(2));
        assert_eq!(super::cpu_count("0-3,5,7-8"), Some(7));
        assert_eq!(super::cpu_count("0"), Some(1));
        for bad in ["", "3-1", "0-", "x", "0-1,,2", "0-18446744073709551615"] {
            assert_eq!(super::cpu_count(bad), None, "{bad:?}");
        }
        // This machine's own, as the governor reads them (a Linux test machine has both).
        if ["/proc/loadavg", "/sys/devices/system/cpu/online"]
            .iter()
            .all(|p| std::path::Path::new(p).exists())
        {
            let n = std::thread::available_parallelism().map_or(1, usize::from);
            // More workers than cores: crowded whatever else runs.
            assert!(super::crowded(n.saturating_mul(1024)));
        }
    }

    #[test]
    fn a_busy_neighbour_from_the_start_costs_three_pool_steps() {
        // A generation of 128 tokens beside a busy core: the pool's first two steps (before
        // anything is known of one thread), then one probe of it 64 steps after the change
        // (probes of two steps made that five).
        let mut g = Governor::default();
        let n = drive(&mut g, 128, 0.020, 0.012);
        assert_eq!(n, 3, "{n} of 128 steps on the slow pool");
    }
}
