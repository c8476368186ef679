//! The instances an instance keeps between invocations when its operator chose reuse
//! ([`Reuse`]): at most as many as may run at once, each dropped after its number of calls or
//! its idle time. Generic over what is kept, so that it knows nothing of stores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::spec::Reuse;

/// How many instances all pools of a host keep together, and the most they may: kept instances
/// hold the engine's instance slots, which fresh instances of every other plugin need too.
pub(crate) struct KeptBudget {
    /// The weight of the instances kept now.
    kept: AtomicUsize,
    max: usize,
}

impl KeptBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(KeptBudget { kept: AtomicUsize::new(0), max })
    }

    /// Counts one more kept instance of `weight`, if there is room for it.
    fn reserve(&self, weight: usize) -> bool {
        self.kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n.saturating_add(weight) <= self.max).then_some(n + weight)
            })
            .is_ok()
    }

    /// Whether one more kept instance of `weight` would fit now.
    fn has_room(&self, weight: usize) -> bool {
        self.kept.load(Ordering::Acquire).saturating_add(weight) <= self.max
    }

    fn release(&self, n: usize) {
        self.kept.fetch_sub(n, Ordering::AcqRel);
    }

    /// How much is kept across the host, in weight.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept.load(Ordering::Acquire)
    }
}

/// Idle instances of one plugin instance, the most recently used last.
pub(crate) struct IdlePool<T> {
    policy: Reuse,
    /// The most kept at once: more could never be used at once.
    max_idle: usize,
    idle: Mutex<Vec<Kept<T>>>,
    /// Retired (its instance unloaded or replaced): nothing more is kept.
    retired: std::sync::atomic::AtomicBool,
    budget: Arc<KeptBudget>,
    /// What one kept instance counts against the budget.
    weight: usize,
}

struct Kept<T> {
    value: T,
    /// Invocations it has served.
    served: u32,
    /// When it went idle.
    since: Instant,
}

impl<T: Send + 'static> IdlePool<T> {
    /// A pool for `policy`, keeping at most `max_idle`, each counting `weight` against the
    /// host's `budget`; when a tokio runtime runs, a task drops instances idle for longer than
    /// the policy allows, even when no invocation comes to notice.
    pub(crate) fn start(policy: Reuse, max_idle: usize, budget: Arc<KeptBudget>, weight: usize) -> Arc<Self> {
        let pool = Arc::new(IdlePool {
            policy,
            max_idle,
            idle: Mutex::new(Vec::new()),
            retired: Default::default(),
            budget,
            weight: weight.max(1),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    fn idle_for(&self) -> Duration {
        Duration::from_secs(self.policy.idle_secs)
    }

    /// The warmest instance that may serve again, and how many invocations it has served.
    pub(crate) fn take(&self) -> Option<(T, u32)> {
        let (kept, expired) = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let expired = self.expire(&mut idle);
            let kept = idle.pop();
            self.budget.release(usize::from(kept.is_some()) * self.weight);
            (kept, expired)
        };
        // Dropping an instance hands its memory back: not under the lock.
        drop(expired);
        kept.map(|k| (k.value, k.served))
    }

    /// Keeps `value`, which has served `served` invocations, unless that is its last, the pool
    /// is full, or the host keeps as many as it may.
    pub(crate) fn give_back(&self, value: T, served: u32) {
        if served >= self.policy.calls || self.retired.load(Ordering::Acquire) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: `retire` empties the pool under it.
        if !self.retired.load(Ordering::Acquire)
            && idle.len() < self.max_idle
            && self.budget.reserve(self.weight)
        {
            idle.push(Kept { value, served, since: Instant::now() });
            return;
        }
        // A refused instance is dropped (its memory handed back) after the lock.
        drop(idle);
        drop(value);
    }

    /// Keeps nothing more and drops what is kept: the instance was unloaded or replaced. Kept
    /// instances refer to their plugin, so without this they would keep it alive.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let dropped = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            self.budget.release(idle.len() * self.weight);
            std::mem::take(&mut *idle)
        };
        drop(dropped);
    }

    /// Whether no instance is kept now.
    pub(crate) fn is_empty(&self) -> bool {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Whether one more instance given back now would be kept: the pool is not retired nor
    /// full, and the host keeps fewer than it may.
    pub(crate) fn can_keep_another(&self) -> bool {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        !self.retired.load(Ordering::Acquire)
            && idle.len() < self.max_idle
            && self.budget.has_room(self.weight)
    }

    /// How many instances are kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Takes out the instances idle for too long (the oldest are first).
    fn expire(&self, idle: &mut Vec<Kept<T>>) -> Vec<Kept<T>> {
        let limit = self.idle_for();
        let stale = idle.iter().take_while(|k| k.since.elapsed() >= limit).count();
        self.budget.release(stale * self.weight);
        idle.drain(..stale).collect()
    }

    fn sweep_now(&self) {
        let expired = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            self.expire(&mut idle)
        };
        drop(expired);
    }
}

impl<T> Drop for IdlePool<T> {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.release(idle.len() * self.weight);
    }
}

/// Drops idle instances as they expire, until the pool itself is dropped (its instance unloaded
/// or replaced).
async fn sweep<T: Send + 'static>(pool: Weak<IdlePool<T>>) {
    // An instance goes at most a quarter of its idle time late.
    let Some(every) = pool.upgrade().map(|p| (p.idle_for() / 4).max(Duration::from_millis(250))) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => pool.sweep_now(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_serves_its_calls_then_goes_and_the_pool_keeps_no_more_than_can_run() {
        let budget = KeptBudget::new(3);
        let pool = IdlePool::start(Reuse { calls: 2, idle_secs: 60 }, 2, budget.clone(), 1);
        assert!(pool.take().is_none());
        pool.give_back("a", 1);
        let (a, served) = pool.take().unwrap();
        assert_eq!((a, served), ("a", 1));
        pool.give_back(a, 2);
        assert!(pool.take().is_none(), "an instance that served `calls` invocations is dropped");
        pool.give_back("b", 1);
        pool.give_back("c", 1);
        pool.give_back("d", 1);
        assert_eq!(pool.len(), 2, "no more kept than may run at once");
        assert_eq!(pool.take().map(|(v, _)| v), Some("c"), "the warmest first");

        // The host-wide budget: another instance's pool gets only what is left of it.
        let other = IdlePool::start(Reuse { calls: 2, idle_secs: 60 }, 8, budget.clone(), 1);
        for v in ["e", "f", "g"] {
            other.give_back(v, 1);
        }
        assert_eq!((pool.len(), other.len(), budget.kept()), (1, 2, 3));
        drop(other);
        assert_eq!(budget.kept(), 1, "a dropped pool gives its share back");
        pool.take();
        assert_eq!(budget.kept(), 0);

        // Heavier instances count for more of the budget.
        let heavy = IdlePool::start(Reuse { calls: 9, idle_secs: 60 }, 8, budget.clone(), 2);
        heavy.give_back("h1", 1);
        heavy.give_back("h2", 1);
        assert_eq!((heavy.len(), budget.kept()), (1, 2));
        // Retired: what was kept goes, and nothing more is kept.
        heavy.retire();
        heavy.give_back("h3", 1);
        assert_eq!((heavy.len(), budget.kept()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_instances_are_dropped_after_their_idle_time_without_any_call() {
        let budget = KeptBudget::new(4);
        let pool = IdlePool::start(Reuse { calls: 100, idle_secs: 2 }, 4, budget.clone(), 1);
        pool.give_back(String::from("kept"), 1);
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(pool.len(), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!((pool.len(), budget.kept()), (0, 0));
        assert!(pool.take().is_none());
    }
}
