//! Warden's integration tests: real plugins in real sandboxes, one test binary
//! (as in wasmtime's `tests/all`).

mod abi;
mod chains;
mod cluster;
mod embedding;
mod escape;
mod faults;
mod fixtures;
mod hostile;
mod interfaces;
mod load;
mod messaging;
mod operating;
mod python;
mod runtime;
mod state;
mod supervision;
mod wit;
