//! The events of dead letters, limited per path so that one child cannot flood the
//! event stream (and push other children's exits out of a slow subscriber's backlog).
//!
//! Every dead letter is counted in [`MessageStats`](super::MessageStats) whatever
//! happens here. Within one window of [`WINDOW`], the first [`PER_WINDOW`] dead
//! letters of a path each get their `dead_letter` event; the rest are counted, and
//! one `dead_letters_suppressed` event says how many when the window ends.

use crate::ExitReason;
use crate::events::{DeadLetterReason, Event, EventBus};
use crate::task::Owned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);
/// Dead-letter events per path and window; the rest are summed up.
pub(crate) const PER_WINDOW: u32 = 100;
/// Windows kept before the ones that ended are swept.
const SWEEP_ABOVE: usize = 1024;

/// One dead letter, as its event tells it.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    /// The target's path.
    pub(crate) path: String,
    pub(crate) reason: DeadLetterReason,
    pub(crate) sender: Option<String>,
    pub(crate) size: u64,
    pub(crate) crashes: u32,
    pub(crate) exit: Option<ExitReason>,
}

#[derive(Debug)]
pub(crate) struct DeadLetters {
    events: Arc<EventBus>,
    windows: Mutex<HashMap<Arc<str>, Window>>,
}

#[derive(Debug)]
struct Window {
    ends: Instant,
    shown: u32,
    suppressed: Arc<Mutex<u64>>,
    /// Publishes the suppressed count when the window ends.
    flush: Option<Owned<()>>,
}

impl DeadLetters {
    pub(crate) fn new(events: Arc<EventBus>) -> Self {
        Self { events, windows: Mutex::default() }
    }

    /// Publishes `letter`'s event, unless its path has had its share in this window.
    pub(crate) fn announce(&self, letter: DeadLetter) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| {
                w.ends > now || w.flush.as_ref().is_some_and(|f| !f.0.is_finished())
            });
        }
        let window = match windows.get_mut(letter.path.as_str()) {
            Some(w) if w.ends > now => w,
            stale => {
                // A window that ended before its flush ran: its count is told now.
                if let Some(old) = stale {
                    self.summarize(&letter.path, &old.suppressed);
                }
                let path = Arc::from(letter.path.as_str());
                windows.entry(path).insert_entry(Window::new(now)).into_mut()
            }
        };
        if window.shown < PER_WINDOW {
            window.shown += 1;
            drop(windows);
            let DeadLetter { path, reason, sender, size, crashes, exit } = letter;
            self.events.emit(Event::DeadLetter { path, reason, sender, size, crashes, exit });
            return;
        }
        *window.suppressed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        if window.flush.is_none()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (events, count, ends) =
                (Arc::clone(&self.events), Arc::clone(&window.suppressed), window.ends);
            let path = letter.path;
            window.flush = Some(Owned(runtime.spawn(async move {
                tokio::time::sleep_until(ends).await;
                summarize(&events, &path, &count);
            })));
        }
    }

    /// Publishes every window's suppressed count now (the tree is stopping: its
    /// event stream ends after this).
    pub(crate) fn summarize_all(&self) {
        let windows = std::mem::take(&mut *self.windows.lock().unwrap_or_else(|p| p.into_inner()));
        for (path, window) in windows {
            drop(window.flush);
            self.summarize(&path, &window.suppressed);
        }
    }

    fn summarize(&self, path: &str, count: &Mutex<u64>) {
        summarize(&self.events, path, count);
    }
}

/// Publishes how many dead letters of `path` were not shown, if any (taking the count).
fn summarize(events: &EventBus, path: &str, count: &Mutex<u64>) {
    let count = std::mem::take(&mut *count.lock().unwrap_or_else(|p| p.into_inner()));
    if count > 0 {
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        events.emit(Event::DeadLettersSuppressed { path: path.to_owned(), count, window_ms });
    }
}

impl Window {
    fn new(now: Instant) -> Self {
        Self { ends: now + WINDOW, shown: 0, suppressed: Arc::default(), flush: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(path: &str) -> DeadLetter {
        DeadLetter {
            path: path.into(),
            reason: DeadLetterReason::MailboxFull,
            sender: None,
            size: 1,
            crashes: 0,
            exit: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_from_one_path_is_summed_up_and_other_paths_are_not_affected() {
        let events = Arc::new(EventBus::new(4096));
        let mut rx = events.subscribe();
        let gate = DeadLetters::new(Arc::clone(&events));
        for _ in 0..1000 {
            gate.announce(letter("root/flood"));
        }
        gate.announce(letter("root/quiet"));
        tokio::time::sleep(WINDOW + Duration::from_millis(1)).await;
        gate.announce(letter("root/flood")); // a new window
        let mut shown = HashMap::<String, u32>::new();
        let mut suppressed = Vec::new();
        while let Some(crate::events::Received::Event(record)) = rx.try_next() {
            match record.event {
                Event::DeadLetter { path, .. } => *shown.entry(path).or_default() += 1,
                Event::DeadLettersSuppressed { path, count, .. } => suppressed.push((path, count)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(shown["root/flood"], PER_WINDOW + 1);
        assert_eq!(shown["root/quiet"], 1);
        assert_eq!(suppressed, [("root/flood".to_owned(), 1000 - u64::from(PER_WINDOW))]);
    }
}
