//! How many instances may live at once: the pool's size, lowered to what the
//! kernel's mapping ceiling allows, so the host refuses an instance instead of the
//! process aborting at the ceiling.

use super::error::SandboxError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory mappings one live instance costs, measured on Linux (WASMTIME-NOTES.md:
/// ~6-7), rounded up for safety.
const MAPS_PER_INSTANCE: usize = 8;
/// Mappings left for everything else the process does.
const MAPS_RESERVE: usize = 4_096;

/// Counts live instances against a limit derived from the pool size and the kernel's
/// mapping ceiling, so the host refuses an instance instead of aborting.
#[derive(Debug)]
pub(crate) struct Capacity {
    live: AtomicUsize,
    limit: usize,
    why: String,
}

impl Capacity {
    pub(crate) fn new(configured: usize) -> Self {
        if let Some(max_maps) = max_map_count() {
            let by_maps = max_maps.saturating_sub(MAPS_RESERVE) / MAPS_PER_INSTANCE;
            if by_maps < configured {
                return Self {
                    live: AtomicUsize::new(0),
                    limit: by_maps,
                    why: format!(
                        "vm.max_map_count is {max_maps} and each instance needs about \
                         {MAPS_PER_INSTANCE} mappings; raise it with `sysctl vm.max_map_count=N`"
                    ),
                };
            }
        }
        Self {
            live: AtomicUsize::new(0),
            limit: configured,
            why: "EngineConfig::max_instances".to_owned(),
        }
    }
}

impl Capacity {
    /// Instances live now, and the most allowed at once.
    pub(crate) fn instances(&self) -> (usize, usize) {
        (self.live.load(Ordering::Acquire), self.limit)
    }

    /// Takes a slot for one live instance, or says why not.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Slot, SandboxError> {
        let cap = self;
        let mut live = cap.live.load(Ordering::Acquire);
        loop {
            if live >= cap.limit {
                return Err(SandboxError::Capacity {
                    live,
                    limit: cap.limit,
                    why: cap.why.clone(),
                });
            }
            match cap.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Slot { capacity: Arc::clone(self) }),
                Err(now) => live = now,
            }
        }
    }
}

/// One live instance's share of [`Capacity`]; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    capacity: Arc<Capacity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.capacity.live.fetch_sub(1, Ordering::AcqRel);
    }
}

fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}
