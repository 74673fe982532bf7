//! The store's resource limiter: a child's memory and table limits, enforced.

/// The store's `ResourceLimiter`: a refused grow is an error (so a trap the host can
/// classify exactly as `memory_limit`), never a silent -1 a Rust guest would turn into
/// an indistinguishable abort.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) max_memory_bytes: usize,
    pub(crate) max_table_elements: usize,
    pub(crate) max_instances: usize,
}

/// Raised by the limiter; the classifier turns it into `trap(memory_limit)`.
#[derive(Debug, thiserror::Error)]
#[error("{what} limit reached: wanted {desired} {unit}, limit is {limit}")]
pub(crate) struct LimitExceeded {
    pub(crate) what: &'static str,
    pub(crate) desired: usize,
    pub(crate) limit: usize,
    pub(crate) unit: &'static str,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "memory",
                desired,
                limit: self.max_memory_bytes,
                unit: "bytes",
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "table",
                desired,
                limit: self.max_table_elements,
                unit: "elements",
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}
