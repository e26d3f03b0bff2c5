//! A team of threads for the parallel regions of a generation step.
//!
//! A one-token step of a small model is about 120 short parallel regions (a few tens of
//! microseconds each: the matrix products of every layer, its attention) separated by short
//! serial parts (norms, quantisation, rotary embedding). Rayon's pool handles such a region
//! by splitting it in halves for its deques and waking or stealing workers: here the second
//! thread spent about a tenth of its time finding work, and one thread waited for the other
//! at the end of each region, so two threads were only 1.5 times as fast as one.
//!
//! The team's workers stay with the step instead: between regions they spin on one atomic
//! generation counter (for [`SPIN`], then they sleep on a condition variable, so a team left
//! idle costs nothing), and inside a region every thread, the caller included, runs a
//! contiguous share of the task indices from the front, then takes what is left of the other
//! threads' shares from their back. A region therefore starts on every thread within a
//! fraction of a microsecond, neighbouring rows stay on one thread in order (the hardware
//! prefetcher follows them), and its tasks (a few microseconds each) still share out by
//! themselves whatever the threads' speeds. The caller never waits for a worker that
//! sleeps: the region is closed when the caller has run out of tasks, and a worker that wakes
//! after that finds nothing to do.
//!
//! The `unsafe` here is the lifetime of the region's closure, which the workers read through
//! a `'static` reference (as any scoped thread pool does): [`Team::run`] does not return, nor
//! unwind, before the region is closed and no worker is inside it; and [`Team::for_each`]'s
//! hand-out of disjoint `&mut` items, one per task index.
//!
//! The team's atomics, locks and threads come from the `sync` shim: `std`'s, or under the
//! cargo feature `loom` the model checker's, for the tests in `loom_tests`, which run a small
//! team under every interleaving of its threads (up to a bound) and every value its atomics
//! may read. A build with that feature runs the team inside loom models only.
#![allow(
    unsafe_code,
    reason = "a scoped region's closure shared with the team's threads (see the module docs)"
)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use self::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use self::sync::thread::{self, JoinHandle};
use self::sync::{Arc, Condvar, Mutex, MutexGuard, hint};

/// Where the team's atomics, locks, threads and spin hint come from: `std`, or `loom` for the
/// model-checked tests (cargo feature `loom`). Re-exports only: the normal build uses `std`'s
/// own items.
mod sync {
    #[cfg(feature = "loom")]
    pub(super) use loom::{
        hint,
        sync::{Arc, Condvar, Mutex, MutexGuard, atomic},
        thread,
    };
    #[cfg(not(feature = "loom"))]
    pub(super) use std::{
        hint,
        sync::{Arc, Condvar, Mutex, MutexGuard, atomic},
        thread,
    };
}

/// How long an idle worker spins for the next region before it sleeps: longer than the
/// serial parts between a step's regions and than the work between two steps of a
/// generation (sampling, decoding the token), short enough that an idle team is idle.
pub const SPIN: Duration = Duration::from_micros(500);

/// Whether an idle worker that has spun `spins` times since `start` goes to sleep: after
/// [`SPIN`], the clock read every 64 spins.
#[cfg(not(feature = "loom"))]
#[inline(always)]
fn spun_out(spins: u32, start: Instant) -> bool {
    spins.is_multiple_of(64) && start.elapsed() > SPIN
}

/// Spins of an idle worker before it sleeps, under loom.
#[cfg(feature = "loom")]
const LOOM_SPINS: u32 = 2;

/// Under loom, which has no clock: after [`LOOM_SPINS`] spins (each a yield to loom's
/// scheduler), so that a model stays finite and still sees regions start during a spin.
#[cfg(feature = "loom")]
fn spun_out(spins: u32, _: Instant) -> bool {
    spins >= LOOM_SPINS
}

/// A region's closure, as the workers hold it while they are inside the region.
type Job = &'static (dyn Fn(usize) + Sync);

/// The region on offer.
#[derive(Default)]
struct Region {
    /// Its generation (also in [`Shared::generation`], which the workers watch).
    generation: u64,
    /// Its closure, `None` once the caller has closed it.
    job: Option<Job>,
}

struct Shared {
    /// Bumped (under the `region` lock) for each region, and to stop.
    generation: AtomicU64,
    region: Mutex<Region>,
    wake: Condvar,
    /// Workers asleep on `wake`.
    sleepers: AtomicUsize,
    /// Each thread's share of the open region's tasks, still to run.
    shares: Vec<Share>,
    /// Workers inside the region (holding its closure).
    inside: AtomicUsize,
    /// A task panicked on a worker.
    panicked: AtomicBool,
    quit: AtomicBool,
}

/// A thread's share of a region: the task indices `lo..hi` not yet taken, packed in one word
/// (`hi` in the high half) so that both ends move atomically. On a cache line of its own: its
/// thread takes from the front without touching the other threads' lines.
#[repr(align(128))]
#[derive(Default)]
struct Share(AtomicU64);

impl Share {
    fn set(&self, lo: usize, hi: usize) {
        self.0.store(pack(lo, hi), Ordering::Relaxed);
    }

    /// Takes the first task (`front`) or the last one.
    fn take(&self, front: bool) -> Option<usize> {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = (v & 0xffff_ffff, v >> 32);
            if lo >= hi {
                return None;
            }
            let (next, i) = if front {
                (v + 1, lo)
            } else {
                (v - (1 << 32), hi - 1)
            };
            match self
                .0
                .compare_exchange_weak(v, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return usize::try_from(i).ok(),
                Err(now) => v = now,
            }
        }
    }
}

fn pack(lo: usize, hi: usize) -> u64 {
    let lo = u64::try_from(lo).unwrap_or(u64::MAX).min(0xffff_ffff);
    let hi = u64::try_from(hi).unwrap_or(u64::MAX).min(0xffff_ffff);
    hi << 32 | lo
}

impl Shared {
    fn new(threads: usize) -> Self {
        Self {
            generation: AtomicU64::new(0),
            region: Mutex::default(),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            shares: (0..threads.max(1)).map(|_| Share::default()).collect(),
            inside: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
        }
    }

    /// Shares `tasks` out in contiguous runs, one per thread (neighbouring rows of a matrix
    /// stay on one thread, in order, which the hardware prefetcher follows).
    fn share_out(&self, tasks: usize) {
        let n = self.shares.len();
        for (i, s) in self.shares.iter().enumerate() {
            s.set(tasks * i / n, tasks * (i + 1) / n);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Region> {
        // The lock guards plain values that every holder leaves consistent.
        self.region.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs tasks of the open region until none is left: thread `me`'s share from the front,
    /// then the others' from the back.
    fn claim(&self, job: &(dyn Fn(usize) + Sync), me: usize) {
        let n = self.shares.len();
        for k in 0..n {
            let Some(share) = self.shares.get((me + k) % n) else {
                continue;
            };
            while let Some(i) = share.take(k == 0) {
                job(i);
            }
        }
    }
}

/// A task of a region panicked on one of the team's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// The calling thread and `threads - 1` workers (see the module documentation).
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team")
            .field("threads", &self.threads())
            .finish()
    }
}

/// Closes the open region when dropped, also while a task on the calling thread unwinds:
/// takes the closure away and waits until no worker holds it.
struct Close<'a>(&'a Shared);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        self.0.lock().job = None;
        let mut spins = 0u32;
        while self.0.inside.load(Ordering::Acquire) != 0 {
            // A worker the scheduler has put aside may take a time slice to finish.
            spins = spins.saturating_add(1);
            if spins < 1 << 14 {
                hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

impl Team {
    /// A team of `threads` (the caller and `threads - 1` new threads; one means the caller
    /// alone).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new(threads));
        let mut team = Self {
            shared,
            workers: Vec::new(),
        };
        for i in 1..threads.max(1) {
            let shared = Arc::clone(&team.shared);
            let handle = thread::Builder::new()
                .name(format!("rempart-step-{i}"))
                .spawn(move || work(&shared, i))?;
            team.workers.push(handle);
        }
        Ok(team)
    }

    /// Threads in the team, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `job(i)` for every `i` in `0..tasks`, each once, on the team's threads; returns
    /// when all have run. A task that panics on the calling thread unwinds from here (after
    /// the region is closed); one that panics on a worker is reported as [`Panicked`].
    pub fn run(&self, tasks: usize, job: &(dyn Fn(usize) + Sync)) -> Result<(), Panicked> {
        if self.workers.is_empty() || tasks <= 1 {
            (0..tasks).for_each(job);
            return Ok(());
        }
        let shared = &*self.shared;
        // SAFETY: only the lifetime changes. The workers copy the reference out of the region
        // while holding its lock, only while it is open, and count themselves `inside` as they
        // do; `Close`, which runs before this function returns or unwinds, removes it under the
        // same lock and waits until no worker is inside. No use outlives `job`'s borrow.
        let erased = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
        {
            let mut r = shared.lock();
            shared.share_out(tasks);
            shared.panicked.store(false, Ordering::Relaxed);
            r.job = Some(erased);
            r.generation += 1;
            shared.generation.store(r.generation, Ordering::Release);
        }
        if shared.sleepers.load(Ordering::Acquire) > 0 {
            shared.wake.notify_all();
        }
        let close = Close(shared);
        shared.claim(job, 0);
        drop(close);
        if shared.panicked.swap(false, Ordering::AcqRel) {
            return Err(Panicked);
        }
        Ok(())
    }

    /// Runs `f` on every item of `items`, each once, on the team's threads (see
    /// [`Self::run`]).
    pub fn for_each<T: Send>(
        &self,
        items: &mut [T],
        f: impl Fn(&mut T) + Sync,
    ) -> Result<(), Panicked> {
        let n = items.len();
        let base = Items(items.as_mut_ptr());
        self.run(n, &|i| {
            if i < n {
                // SAFETY: `run` calls each index below `n` once, so every `&mut` points to a
                // different item of `items`, which stays borrowed mutably until `run` returns.
                f(unsafe { &mut *base.at(i) })
            }
        })
    }
}

/// The items of [`Team::for_each`], shared with the team's threads.
struct Items<T>(*mut T);

impl<T> Items<T> {
    fn at(&self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

// SAFETY: the threads reach distinct items through it (one per task index), so sharing it
// shares no item; the items may move to the other threads (`T: Send`).
unsafe impl<T: Send> Sync for Items<T> {}

impl Drop for Team {
    fn drop(&mut self) {
        {
            let mut r = self.shared.lock();
            self.shared.quit.store(true, Ordering::Release);
            r.generation += 1;
            self.shared
                .generation
                .store(r.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            // A worker's tasks ran under `catch_unwind`: joining cannot fail but by a bug.
            let _ = w.join();
        }
    }
}

/// A worker: waits for each region, runs its tasks, until the team is dropped.
fn work(shared: &Shared, me: usize) {
    let mut seen = 0;
    loop {
        // Spin for the next region, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        while shared.generation.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            if spun_out(spins, start) {
                let mut r = shared.lock();
                shared.sleepers.fetch_add(1, Ordering::AcqRel);
                // The generation changes under the lock, so no wake-up is lost between
                // this check and the wait.
                while r.generation == seen {
                    r = shared.wake.wait(r).unwrap_or_else(PoisonError::into_inner);
                }
                shared.sleepers.fetch_sub(1, Ordering::AcqRel);
                break;
            }
            hint::spin_loop();
        }
        let job = {
            let r = shared.lock();
            // Read under the lock, with the generation: the team may have been dropped since
            // the spin saw a region, and its last bump of the generation, read here, must not
            // be taken for a closed region (the worker would then wait for a next one forever,
            // and the drop for the worker).
            if shared.quit.load(Ordering::Acquire) {
                return;
            }
            seen = r.generation;
            match r.job {
                Some(job) => {
                    shared.inside.fetch_add(1, Ordering::AcqRel);
                    job
                }
                // Closed already: the caller ran every task.
                None => continue,
            }
        };
        if catch_unwind(AssertUnwindSafe(|| shared.claim(job, me))).is_err() {
            shared.panicked.store(true, Ordering::Release);
        }
        shared.inside.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Panicked, SPIN, Team};

    #[test]
    fn every_task_runs_once_on_the_team() {
        let team = Team::new(3).unwrap();
        assert_eq!(team.threads(), 3);
        for tasks in [0, 1, 2, 7, 300] {
            let runs: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            team.run(tasks, &|i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert!(
                runs.iter().all(|r| r.load(Ordering::Relaxed) == 1),
                "{tasks}"
            );
        }
        // Disjoint items, written in place, region after region (workers asleep in between
        // for some of them).
        let mut items: Vec<u64> = (0..1000).collect();
        for round in 0..50u64 {
            if round % 10 == 0 {
                std::thread::sleep(SPIN * 3);
            }
            team.for_each(&mut items, |v| *v += 1).unwrap();
        }
        assert!(items.iter().enumerate().all(|(i, v)| *v == i as u64 + 50));
    }

    #[test]
    fn the_workers_take_part() {
        let team = Team::new(2).unwrap();
        let caller = std::thread::current().id();
        let others = AtomicUsize::new(0);
        // Tasks long enough that the worker, spinning or woken, takes some.
        for _ in 0..20 {
            team.run(64, &|_| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                if std::thread::current().id() != caller {
                    others.fetch_add(1, Ordering::Relaxed);
                }
            })
            .unwrap();
        }
        assert!(others.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_panic_is_reported_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        let caller = std::thread::current().id();
        // A panic on the worker is reported; one on the caller unwinds from `run`. Either way
        // the region is closed and the next one runs every task.
        let mut on_worker = false;
        for _ in 0..200 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                team.run(8, &|_| {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                    if std::thread::current().id() != caller {
                        std::panic::panic_any("worker task");
                    }
                })
            }));
            if matches!(r, Ok(Err(Panicked))) {
                on_worker = true;
                break;
            }
        }
        assert!(on_worker, "the worker never ran a task");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(4, &|_| std::panic::panic_any("caller"))
        }));
        assert!(r.is_err());
        let done = AtomicUsize::new(0);
        team.run(100, &|_| {
            done.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(done.load(Ordering::Relaxed), 100);
    }
}

/// Model-checked tests of the team's synchronisation: loom runs each model under every
/// interleaving of its threads (up to the preemption bound) and every value its atomics may
/// read, so a write that the caller is not synchronised with can come back as an older value.
/// Teams of 2 and 3 threads, regions of 2 and 3 tasks: small enough to explore in seconds.
/// These models found the worker that took the team's last bump of the generation for a
/// closed region and slept through the drop (`work` now reads `quit` under the lock).
///
/// Run with (about 110 000 executions, 5 s of tests on two cores; with 3 preemptions, 6
/// million and 4 minutes, nearly all of them the three-thread region):
///
/// ```text
/// LOOM_MAX_PREEMPTIONS=2 nice cargo test --locked --features loom --lib engine::lean::team
/// ```
#[cfg(all(test, feature = "loom"))]
mod loom_tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::{Panicked, Team};

    /// Runs `f` under loom: every interleaving with at most two preemptions, unless
    /// `LOOM_MAX_PREEMPTIONS` says otherwise.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(2);
        }
        b.check(f);
    }

    /// `n` counters at zero.
    fn counters(n: usize) -> Vec<AtomicUsize> {
        (0..n).map(|_| AtomicUsize::new(0)).collect()
    }

    /// The counters' values, read with `Relaxed`: only a happens-before edge from the tasks'
    /// writes guarantees that these reads see them.
    fn values(c: &[AtomicUsize]) -> Vec<usize> {
        c.iter().map(|v| v.load(Ordering::Relaxed)).collect()
    }

    /// Every task of a region runs once, on the caller or one of the two workers, and `run`
    /// returns after all have run, their writes visible; `for_each`'s `&mut` items too (loom
    /// checks each plain write against every other access).
    #[test]
    fn a_region_runs_every_task_once_and_the_caller_sees_its_writes() {
        model(|| {
            let team = Team::new(3).unwrap();
            let runs = counters(3);
            team.run(3, &|i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(values(&runs), [1, 1, 1]);
        });
        model(|| {
            let team = Team::new(2).unwrap();
            let mut items = counters(2);
            team.for_each(&mut items, |v| v.with_mut(|v| *v += 1))
                .unwrap();
            assert_eq!(values(&items), [1, 1]);
        });
    }

    /// A region's tasks run within it: none of the first region after `run` returned (a late
    /// worker still holding its closure), the second region runs its own closure.
    #[test]
    fn successive_regions_do_not_mix() {
        model(|| {
            let team = Team::new(2).unwrap();
            let (a, b) = (counters(2), counters(2));
            team.run(2, &|i| {
                a[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(values(&a), [1, 1]);
            team.run(2, &|i| {
                b[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(values(&b), [1, 1]);
            // Joined: whatever the workers did is visible now.
            drop(team);
            assert_eq!((values(&a), values(&b)), (vec![1, 1], vec![1, 1]));
        });
    }

    /// Dropping the team wakes and joins its workers, spinning or asleep, used or not (loom
    /// reports a deadlock if one never ends, and a leak if the shared state outlives them).
    #[test]
    fn dropping_the_team_ends_its_workers() {
        model(|| drop(Team::new(3).unwrap()));
        model(|| {
            let team = Team::new(2).unwrap();
            team.run(2, &|_| {}).unwrap();
            drop(team);
        });
    }

    /// A task that panics on the worker is reported as [`Panicked`] (and only then), and the
    /// next region runs normally.
    #[test]
    fn a_task_that_panics_on_a_worker_is_reported() {
        // Whether some interleaving had the worker run a task (outside the model's memory).
        static ON_WORKER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        model(|| {
            let team = Team::new(2).unwrap();
            let caller = loom::thread::current().id();
            let on_worker = AtomicBool::new(false);
            let r = catch_unwind(AssertUnwindSafe(|| {
                team.run(2, &|_| {
                    if loom::thread::current().id() != caller {
                        on_worker.store(true, Ordering::Relaxed);
                        std::panic::panic_any("worker task");
                    }
                })
            }));
            let Ok(r) = r else {
                panic!("no task panicked on the caller");
            };
            let on_worker = on_worker.load(Ordering::Relaxed);
            assert_eq!(r == Err(Panicked), on_worker);
            if on_worker {
                ON_WORKER.store(true, Ordering::Relaxed);
            }
            let runs = counters(2);
            team.run(2, &|i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(values(&runs), [1, 1]);
        });
        assert!(ON_WORKER.load(Ordering::Relaxed));
    }
}
