//! Guest stdout and stderr, captured line by line into `tracing` under the child's
//! path (target `warden::guest`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A partial line longer than this is logged as it is, so a guest that never writes a
/// newline cannot make the host buffer without bound.
const MAX_LINE: usize = 8 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct TracingStream {
    child: Arc<str>,
    stream: &'static str,
}

impl TracingStream {
    pub(crate) fn new(child: &str, stream: &'static str) -> Self {
        Self { child: Arc::from(child), stream }
    }
}

impl IsTerminal for TracingStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TracingStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            child: Arc::clone(&self.child),
            stream: self.stream,
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    child: Arc<str>,
    stream: &'static str,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(target: "warden::guest", child = &*self.child, stream = self.stream, "{line}");
    }

    fn take_lines(&mut self) {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let rest = self.buf.split_off(end + 1);
            let line = std::mem::replace(&mut self.buf, rest);
            self.emit(&line[..end]);
        }
        if self.buf.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.buf);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.take_lines();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.emit(&rest);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.emit(&rest);
        }
    }
}
