//! The CLI's log writer: lines go to stderr through a bounded queue and a thread of
//! their own, so a stderr nobody reads loses log lines (counted) and never blocks a
//! thread of the runtime, nor the end of the run.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Lines that may wait for stderr.
const QUEUE: usize = 4096;

/// Hands each log line to the writer thread, or drops it when the queue is full.
#[derive(Clone, Debug)]
pub(crate) struct Logs {
    queue: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    /// Lines queued and not yet written, and its change.
    pending: Mutex<usize>,
    written: Condvar,
}

impl Logs {
    /// Starts the writer thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (queue, lines) = sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("warden-logs".into())
            .spawn(move || write_all(&lines, &writer))?;
        Ok(Self { queue, shared })
    }

    /// Waits at most `timeout` for the queued lines to be written.
    pub(crate) fn flush(&self, timeout: Duration) {
        let pending = self.shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.shared.written.wait_timeout_while(pending, timeout, |n| *n > 0);
    }
}

fn write_all(lines: &Receiver<Vec<u8>>, shared: &Shared) {
    let mut stderr = std::io::stderr();
    while let Ok(line) = lines.recv() {
        let _ = stderr.write_all(&line);
        let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending -= 1;
        shared.written.notify_all();
    }
}

impl Logs {
    /// Queues `line` unless the queue is full; counted as pending before it can be
    /// written, so the writer never counts below zero.
    fn queue(&self, line: Vec<u8>) -> bool {
        *self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        match self.queue.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                *self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                false
            }
        }
    }
}

impl Write for Logs {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if !self.queue(line.to_vec()) {
            let dropped = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Said in the stream itself once stderr drains again.
            if dropped.is_power_of_two() {
                let note = format!("warden: {dropped} log lines dropped: stderr is slow\n");
                self.queue(note.into_bytes());
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_never_blocks() {
        // A queue with no writer behind it: every line past the queue is dropped.
        let (queue, _lines) = sync_channel(2);
        let mut logs = Logs { queue, shared: Arc::default() };
        for _ in 0..10 {
            assert_eq!(logs.write(b"line\n").unwrap(), 5);
        }
        assert_eq!(logs.shared.dropped.load(Ordering::Relaxed), 8);
        // `flush` gives up after its timeout rather than wait for a stuck writer.
        logs.flush(Duration::from_millis(10));
    }
}
