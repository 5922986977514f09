//! Log output that never carries a secret.
//!
//! [`Redacting`] wraps any [`MakeWriter`] (standard error, a file, a test
//! buffer): every line written through it passes [`crypto::redact::redact`]
//! before it reaches the inner writer. Install it on every log output:
//!
//! ```ignore
//! tracing_subscriber::fmt()
//!     .with_writer(web::logging::Redacting(std::io::stderr))
//!     .init();
//! web::logging::report_panics_in_the_log();
//! ```
//!
//! tracing's fmt layer formats one event into a buffer and writes it with a
//! single `write_all` into a fresh writer, which it then drops. The writer
//! here still copes with partial writes: text is buffered and passed on one
//! complete line at a time, and whatever is left without a newline is passed
//! on when the writer is dropped. A secret is therefore never split across
//! two calls to the redactor, unless a single line is itself split by the
//! caller dropping the writer half-way.

use std::io::{self, Write};

use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

/// Reports every panic as one ERROR event through the log — so through
/// [`Redacting`] like any other line — instead of Rust's default report,
/// which writes the panic's message straight to standard error (past the
/// redactor) and, with `RUST_BACKTRACE` set, a stack trace. The message and
/// where it happened are kept: they are what an operator needs to report
/// the fault. Install once, at start-up.
pub fn report_panics_in_the_log() {
    std::panic::set_hook(Box::new(|panic| {
        let payload = panic.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = panic
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(at = %at, "panic: {message}");
    }));
}

/// A [`MakeWriter`] whose writers redact secrets before writing to the
/// writers `M` makes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.0.make_writer_for(meta))
    }
}

/// A writer that buffers text, and passes it to `W` redacted, line by line.
#[derive(Debug)]
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W) -> Self {
        RedactingWriter {
            inner,
            buf: Vec::new(),
        }
    }

    /// Redacts and writes every complete line buffered so far.
    fn write_lines(&mut self) -> io::Result<()> {
        match self.buf.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let rest = self.buf.split_off(last + 1);
                let lines = std::mem::replace(&mut self.buf, rest);
                write_redacted(&mut self.inner, &lines)
            }
            None => Ok(()),
        }
    }
}

/// Writes `bytes` redacted. Bytes that are not UTF-8 are written as U+FFFD.
fn write_redacted(inner: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(bytes);
    inner.write_all(crypto::redact::redact(&text).as_bytes())
}

impl<W: Write> Write for RedactingWriter<W> {
    /// Takes all of `data`; lines it completes are passed on now, the rest
    /// waits. If passing a line on fails, that line is dropped and the error
    /// returned.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if data.contains(&b'\n') {
            self.write_lines()?;
        }
        Ok(data.len())
    }

    /// Passes on the complete lines and flushes the inner writer. A trailing
    /// partial line stays buffered until its newline or the drop, so that a
    /// secret is not cut in two and missed.
    fn flush(&mut self) -> io::Result<()> {
        self.write_lines()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        // Nowhere to report a failure to from a drop; the log line is lost,
        // as it would be with the inner writer alone.
        let _ = write_redacted(&mut self.inner, &rest);
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const SESSION: &str = "q3X9_vT-2mN8kLpR5sYwZ0aBcDeFgHiJ4uV6xY7zA1b";

    /// A shared buffer that records each write it receives.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<String>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8(b.to_vec()).unwrap());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            self.0.lock().unwrap().concat()
        }
    }

    #[test]
    fn redacting_writer_masks_a_whole_event() {
        let sink = Sink::default();
        let make = Redacting(|| sink.clone());
        let mut w = make.make_writer();
        w.write_all(
            format!("INFO login password=hunter2 session={SESSION} status=200\n").as_bytes(),
        )
        .unwrap();
        drop(w);
        assert_eq!(
            sink.text(),
            "INFO login password=[REDACTED] session=[REDACTED] status=200\n"
        );
    }

    #[test]
    fn redacting_writer_joins_partial_writes_before_redacting() {
        let sink = Sink::default();
        let make = Redacting(|| sink.clone());
        let mut w = make.make_writer();
        let line = format!("a token={SESSION} b\nsecond {SESSION}\n");
        // One byte at a time: no piece alone looks like a secret.
        for b in line.as_bytes() {
            w.write_all(&[*b]).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(sink.text(), "a token=[REDACTED] b\nsecond [REDACTED]\n");
        drop(w);
        assert_eq!(sink.text(), "a token=[REDACTED] b\nsecond [REDACTED]\n");
    }

    #[test]
    fn redacting_writer_holds_a_partial_line_until_drop() {
        let sink = Sink::default();
        let make = Redacting(|| sink.clone());
        let mut w = make.make_writer();
        w.write_all(b"first line\nno newline code=").unwrap();
        w.flush().unwrap();
        assert_eq!(sink.text(), "first line\n");
        w.write_all(b"123456 end").unwrap();
        drop(w);
        assert_eq!(sink.text(), "first line\nno newline code=[REDACTED] end");
    }

    #[test]
    fn redacting_writer_writes_nothing_for_nothing() {
        let sink = Sink::default();
        let make = Redacting(|| sink.clone());
        drop(make.make_writer());
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[test]
    fn redacting_works_as_the_writer_of_a_fmt_subscriber() {
        let sink = Sink::default();
        let s2 = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Redacting(move || s2.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                password = "hunter2",
                code = 123456,
                count = 654321,
                "signed in"
            );
            tracing::info!(token = %SESSION, "issued");
        });
        let out = sink.text();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("123456"), "{out}");
        assert!(!out.contains(SESSION), "{out}");
        assert!(out.contains("signed in"), "{out}");
        assert!(out.contains("count=654321"), "{out}");
        assert!(out.contains("password=\"[REDACTED]\""), "{out}");
        assert!(out.contains("code=[REDACTED]"), "{out}");
    }
}
