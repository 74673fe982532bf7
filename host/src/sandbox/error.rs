//! Why an engine or an instance could not be created.

/// Errors creating an engine or an instance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The engine configuration was refused.
    #[error("cannot configure the wasm engine: {0}")]
    Config(String),
    /// No more instances may be created now.
    #[error(
        "cannot start another instance: {live} are live and the limit is {limit} ({why}); \
         stop some children, or raise the limit"
    )]
    Capacity {
        /// Instances live now.
        live: usize,
        /// The limit in force.
        limit: usize,
        /// Where the limit comes from.
        why: String,
    },
    /// Instantiating the component failed.
    #[error("cannot instantiate {plugin}: {message}")]
    Instantiate {
        /// The plugin's name.
        plugin: String,
        /// wasmtime's explanation.
        message: String,
    },
}
