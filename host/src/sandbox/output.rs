//! What a guest writes for people: its stdout and stderr, captured line by line, and
//! its `log` lines, all into `tracing` under the child's path (target
//! `warden::guest`), and to the budget's [`GuestOutput`] if it has one (the runtime's
//! publishes them as `log` events).
//!
//! A guest decides how much it writes, so the host bounds what that costs it:
//! - lines are split in one pass over what was written (never rescanned), and a line
//!   longer than [`MAX_LINE`] is cut;
//! - every child has an output budget per second ([`ChildLimits::output_per_second`]),
//!   shared by its stdout, stderr and log, and each line costs its length plus
//!   [`LINE_COST`]: past the budget, lines are dropped and counted, and a note says
//!   how many when output is allowed again;
//! - every line is escaped ([`printable`]): a guest cannot forge log lines or send
//!   escape sequences to the operator's terminal.
//!
//! Writing the lines is the `tracing` subscriber's business; the `warden` CLI's never
//! blocks on a slow stderr.
//!
//! [`ChildLimits::output_per_second`]: super::ChildLimits::output_per_second

use crate::escape::printable;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A partial line longer than this is logged as it is, so a guest that never writes a
/// newline cannot make the host buffer without bound; a longer log line is cut.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// What a line costs beyond its bytes, so a flood of empty lines is bounded too.
pub(crate) const LINE_COST: u64 = 64;

/// A child's output budget, shared by the sandboxes started from clones of one
/// [`SandboxConfig`](super::SandboxConfig) (a hibernating child's activations are one
/// incarnation), sized by the first of them from its limits.
#[derive(Clone, Debug, Default)]
pub struct OutputBudget {
    budget: Arc<OnceLock<Arc<Budget>>>,
    sink: Option<Arc<dyn GuestOutput>>,
}

impl OutputBudget {
    /// A budget whose lines also go to `sink` (those that fit the budget, escaped).
    pub fn with_sink(sink: Arc<dyn GuestOutput>) -> Self {
        Self { budget: Arc::default(), sink: Some(sink) }
    }

    pub(crate) fn get(&self, per_second: usize) -> Arc<Budget> {
        Arc::clone(self.budget.get_or_init(|| Budget::new(per_second, self.sink.clone())))
    }
}

/// Where a child's output lines go besides `tracing`: each line that fit its budget,
/// escaped, cut at 8 KiB, and the notes that say how many were dropped.
pub trait GuestOutput: Send + Sync + std::fmt::Debug {
    /// One line of the child at `path`.
    fn line(&self, path: &str, stream: GuestStream, level: LogLevel, line: &str);
}

/// Which of a guest's outputs a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestStream {
    /// Its WASI stdout.
    Stdout,
    /// Its WASI stderr.
    Stderr,
    /// Its `log` calls.
    Log,
}

/// The level of a guest's line (stdout and stderr are `info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Finest detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// What happened.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// One child's output budget: bytes per second, with a burst of one second's worth.
#[derive(Debug)]
pub(crate) struct Budget {
    per_second: u64,
    bucket: Mutex<Bucket>,
    sink: Option<Arc<dyn GuestOutput>>,
}

#[derive(Debug)]
struct Bucket {
    available: u64,
    refilled: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Budget {
    pub(crate) fn new(per_second: usize, sink: Option<Arc<dyn GuestOutput>>) -> Arc<Self> {
        let per_second = per_second as u64;
        Arc::new(Self {
            per_second,
            bucket: Mutex::new(Bucket {
                available: per_second,
                refilled: Instant::now(),
                dropped_lines: 0,
                dropped_bytes: 0,
            }),
            sink,
        })
    }

    /// Writes a line that passed the budget.
    fn emit(&self, path: &str, stream: GuestStream, level: LogLevel, line: &str) {
        let name = match stream {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
            GuestStream::Log => "log",
        };
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "warden::guest", child = path, stream = name, "{line}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "warden::guest", child = path, stream = name, "{line}")
            }
            LogLevel::Info => {
                tracing::info!(target: "warden::guest", child = path, stream = name, "{line}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "warden::guest", child = path, stream = name, "{line}")
            }
            LogLevel::Error => {
                tracing::error!(target: "warden::guest", child = path, stream = name, "{line}")
            }
        }
        if let Some(sink) = &self.sink {
            sink.line(path, stream, level, line);
        }
    }

    /// Passes each line that fits the budget to `emit`, drops the rest (counted); when
    /// lines pass again after some were dropped, `emit` first gets a note saying so.
    fn spend<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>, emit: impl FnMut(&str)) {
        self.spend_at(Instant::now(), lines, emit);
    }

    fn spend_at<'a>(
        &self,
        now: Instant,
        lines: impl IntoIterator<Item = &'a [u8]>,
        mut emit: impl FnMut(&str),
    ) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let per_second = self.per_second as f64;
        let earned = now.saturating_duration_since(bucket.refilled).as_secs_f64() * per_second;
        if earned >= 1.0 {
            let earned = earned.min(per_second) as u64;
            bucket.available = bucket.available.saturating_add(earned).min(self.per_second);
            bucket.refilled = now;
        }
        for line in lines {
            // A line dearer than a whole second's budget passes when the budget is full
            // (it is already cut at MAX_LINE), rather than never.
            let cost = (line.len() as u64 + LINE_COST).min(self.per_second);
            if cost > bucket.available || self.per_second == 0 {
                bucket.dropped_lines += 1;
                bucket.dropped_bytes += line.len() as u64;
                continue;
            }
            bucket.available -= cost;
            if bucket.dropped_lines > 0 {
                let (lines, bytes) = (bucket.dropped_lines, bucket.dropped_bytes);
                (bucket.dropped_lines, bucket.dropped_bytes) = (0, 0);
                emit(&format!(
                    "[warden: {lines} lines ({bytes} bytes) of this child's output were \
                     dropped: over its budget of {} bytes a second]",
                    self.per_second
                ));
            }
            let text = String::from_utf8_lossy(line);
            let shown = printable(&text);
            // Escapes make a line longer: what is written is what is charged.
            let extra = shown.len().saturating_sub(line.len()) as u64;
            bucket.available = bucket.available.saturating_sub(extra);
            emit(&shown);
        }
    }
}

/// Logs a guest's `log` line at `level`, within its budget.
pub(crate) fn log(budget: &Budget, child: &str, level: LogLevel, message: &str) {
    let mut end = message.len().min(MAX_LINE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    budget.spend([&message.as_bytes()[..end]], |line| {
        budget.emit(child, GuestStream::Log, level, line);
    });
}

/// A guest's stdout or stderr.
#[derive(Clone, Debug)]
pub(crate) struct TracingStream {
    child: Arc<str>,
    stream: GuestStream,
    budget: Arc<Budget>,
}

impl TracingStream {
    pub(crate) fn new(child: &str, stream: GuestStream, budget: Arc<Budget>) -> Self {
        Self { child: Arc::from(child), stream, budget }
    }
}

impl IsTerminal for TracingStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TracingStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { stream: self.clone(), partial: Vec::new() })
    }

    /// A stream that handles the lines within the guest's own write call, so what they
    /// cost counts against its CPU deadline. (wasmtime-wasi's default adapter writes on
    /// a task of its own while the guest waits for the flush, off the guest's clock.)
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter { stream: self.clone(), partial: Vec::new() })
    }
}

struct LineWriter {
    stream: TracingStream,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

/// Splits `data` into whole lines in one pass: the first completes `partial` (taken
/// from it), the rest borrow from `data`; the tail without a newline goes to
/// `partial`, which comes back as a line of its own once it is [`MAX_LINE`] long.
/// Every line is cut at [`MAX_LINE`].
fn split<'a>(partial: &mut Vec<u8>, data: &'a [u8]) -> (Vec<Vec<u8>>, Vec<&'a [u8]>) {
    let cut = |line: &'a [u8]| &line[..line.len().min(MAX_LINE)];
    let mut owned = Vec::new();
    let mut lines = Vec::new();
    let mut rest = data;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = cut(&rest[..end]);
        if partial.is_empty() {
            lines.push(line);
        } else {
            let mut joined = std::mem::take(partial);
            joined
                .extend_from_slice(&line[..line.len().min(MAX_LINE - joined.len().min(MAX_LINE))]);
            owned.push(joined);
        }
        rest = &rest[end + 1..];
    }
    partial.extend_from_slice(&rest[..rest.len().min(MAX_LINE - partial.len().min(MAX_LINE))]);
    if partial.len() >= MAX_LINE {
        owned.push(std::mem::take(partial));
    }
    (owned, lines)
}

impl LineWriter {
    fn write(&mut self, data: &[u8]) {
        let (owned, lines) = split(&mut self.partial, data);
        let TracingStream { child, stream, budget } = &self.stream;
        let all = owned.iter().map(Vec::as_slice).chain(lines);
        budget.spend(all, |line| budget.emit(child, *stream, LogLevel::Info, line));
    }

    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            let TracingStream { child, stream, budget } = &self.stream;
            budget.spend([line.as_slice()], |line| {
                budget.emit(child, *stream, LogLevel::Info, line);
            });
        }
    }
}

/// Bytes a guest may write in one call: the epoch (and the deadline) is checked
/// between calls, so one call's cost stays small.
const WRITE_PERMIT: usize = 4096;

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        LineWriter::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(budget: &Budget, lines: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        budget.spend(lines.iter().copied(), |l| out.push(l.to_owned()));
        out
    }

    #[test]
    fn lines_past_the_budget_are_dropped_counted_and_noted() {
        let budget = Budget::new(1000, None);
        let line = [b'x'; 136]; // 200 with the line cost
        let out = spent(&budget, &[&line[..]; 7]);
        assert_eq!(out.len(), 5, "a second's worth");
        // A second later the budget is back, and the first line says what was lost.
        budget.bucket.lock().unwrap().refilled -= std::time::Duration::from_secs(1);
        let out = spent(&budget, &[b"next"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].contains("2 lines (272 bytes)"), "{out:?}");
        assert_eq!(out[1], "next");
        // What reaches the log is escaped: one guest line, one log line, no escapes.
        assert_eq!(spent(&budget, &[b"a\nforged\x1b[2J"]), ["a\\nforged\\u{1b}[2J"]);
    }

    #[test]
    fn a_flood_of_empty_lines_is_bounded() {
        let budget = Budget::new(1 << 20, None);
        let now = Instant::now();
        let (mut partial, mut shown) = (Vec::new(), 0);
        for _ in 0..4096 {
            // 16 MiB of newlines within one instant, written as wasi writes them.
            let (owned, lines) = split(&mut partial, &[b'\n'; 4096]);
            assert!(owned.is_empty());
            budget.spend_at(now, lines, |_| shown += 1);
        }
        assert_eq!(shown, (1 << 20) / LINE_COST, "one second's budget, no more");
        let bucket = budget.bucket.lock().unwrap();
        assert_eq!(bucket.dropped_lines, 4096 * 4096 - (1 << 20) / LINE_COST);
    }

    #[test]
    fn lines_are_split_across_writes_and_cut_at_the_longest() {
        let mut partial = Vec::new();
        let (owned, lines) = split(&mut partial, b"hel");
        assert!(owned.is_empty() && lines.is_empty());
        let (owned, lines) = split(&mut partial, b"lo\nworld\n\nnext");
        assert_eq!(owned, [b"hello".to_vec()]);
        assert_eq!(lines, [&b"world"[..], b""]);
        assert_eq!(partial, b"next");
        let long = vec![b'x'; MAX_LINE * 3];
        let (owned, lines) = split(&mut partial, &long);
        assert_eq!(owned.len(), 1, "a line without end, logged once it is MAX_LINE long");
        assert_eq!(owned[0].len(), MAX_LINE);
        assert!(lines.is_empty() && partial.is_empty());
        let long_line = [long.as_slice(), b"\n"].concat();
        let (_, lines) = split(&mut partial, &long_line);
        assert_eq!(lines[0].len(), MAX_LINE);
    }
}
