//! What the parts of the host ask of each other, as traits and the types they speak:
//! the sandbox asks for messaging ([`Messenger`]) and durable state ([`StateStore`]);
//! messaging and state implement them, and the runtime hands the implementations to
//! each sandbox. Defined here, below all of them, so that none imports another.

mod messenger;
mod state;

pub use messenger::{CancelReason, Envelope, MessageError, Messenger, NoMessaging};
pub use state::{NoState, Op, StateError, StateStore, Usage};

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as [`Messenger::call`] and [`StateStore::write`] return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
