//! Panics are reported through the redacting log (a test binary of its
//! own: the panic hook is global to the process).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A shared buffer the log writes into.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_is_one_redacted_log_event_with_its_place_and_no_stack_trace() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(vellum_web::logging::Redacting(move || writer.clone()))
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    vellum_web::logging::report_panics_in_the_log();

    let caught = std::panic::catch_unwind(|| {
        panic!("a bug while handling password=hunter2");
    });
    // The default report again, so that a failed assertion below is shown.
    drop(std::panic::take_hook());
    assert!(caught.is_err());

    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("panic: a bug while handling"), "{log}");
    assert!(log.contains("panic_log.rs:"), "the place is missing: {log}");
    assert!(!log.contains("hunter2"), "a secret reached the log: {log}");
    assert!(log.contains("[REDACTED]"), "{log}");
    assert!(!log.contains("stack backtrace"), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}
