//! Where log lines go: a buffer in memory that a thread of its own writes out every few
//! milliseconds. A request only copies its line into the buffer; it never waits on the output,
//! and only the first line of a batch wakes the writer (waking it for each line, as a channel
//! does, cost about a tenth of a `me` request). An idle server's writer sleeps until a line
//! comes. No line is dropped: past `MAX_PENDING` bytes, a request waits for the writer instead.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer before it is written.
const WRITE_EVERY: Duration = Duration::from_millis(10);
/// Bytes of lines that may wait; beyond this, loggers wait for the writer.
const MAX_PENDING: usize = 4 << 20;

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a line arrives in an empty buffer, or the writer should stop.
    arrived: Condvar,
    /// Signalled when the writer has taken the pending lines, or should stop.
    taken: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

/// The `MakeWriter` for `tracing_subscriber::fmt`; clones share one buffer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is still pending and stops the writer thread when dropped.
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer whose lines reach `output` within `WRITE_EVERY`, and the guard that writes the
/// last ones.
pub fn batched(output: impl Write + Send + 'static) -> (BatchedWriter, FlushOnDrop) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        arrived: Condvar::new(),
        taken: Condvar::new(),
    });
    let writer = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_out(&writer, output))
        .expect("starting the log writer thread");
    let guard = FlushOnDrop {
        shared: shared.clone(),
        thread: Some(thread),
    };
    (BatchedWriter { shared }, guard)
}

fn lock(shared: &Shared) -> MutexGuard<'_, Pending> {
    // A logger that panicked mid-copy leaves at worst a partial line: keep logging.
    shared.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writer thread: waits for a line, lets `WRITE_EVERY` gather more, then takes what is
/// pending and writes it in one go.
fn write_out(shared: &Shared, mut output: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = lock(shared);
        while pending.lines.is_empty() && !pending.closing {
            pending = shared
                .arrived
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if pending.lines.is_empty() {
            return;
        }
        if !pending.closing {
            drop(pending);
            std::thread::sleep(WRITE_EVERY);
            pending = lock(shared);
        }
        std::mem::swap(&mut pending.lines, &mut batch);
        drop(pending);
        shared.taken.notify_all();
        // Nowhere to report a failing log output: the lines are lost, the server goes on.
        let _ = output.write_all(&batch).and_then(|()| output.flush());
        batch.clear();
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut pending = lock(&self.shared);
        while pending.lines.len() >= MAX_PENDING && !pending.closing {
            pending = self
                .shared
                .taken
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(bytes);
        drop(pending);
        if first {
            self.shared.arrived.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        lock(&self.shared).closing = true;
        self.shared.arrived.notify_one();
        self.shared.taken.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Log output kept in memory, for tests to read back.
#[cfg(test)]
pub(crate) mod captured {
    use super::*;

    /// An output, and a `MakeWriter` for a subscriber; clones share what was written.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::captured::Captured;
    use super::*;

    #[test]
    fn every_line_arrives_whole_and_in_order_from_each_thread() {
        let output = Captured::default();
        let (writer, guard) = batched(output.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let mut w = writer.make_writer();
                        w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = output.text();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..5000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected);
        }
        assert_eq!(text.lines().count(), 20_000);
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let output = Captured::default();
        let (writer, _guard) = batched(output.clone());
        writer.make_writer().write_all(b"alone\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while output.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(output.0.lock().unwrap().as_slice(), b"alone\n");
    }

    #[test]
    fn a_full_buffer_makes_loggers_wait_rather_than_drop_lines() {
        let output = Captured::default();
        let (writer, guard) = batched(output.clone());
        let line = vec![b'x'; 1 << 16];
        // Four times the buffer's bound, from one thread: it must wait for the writer.
        for _ in 0..(4 * MAX_PENDING / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        drop(guard);
        assert_eq!(output.0.lock().unwrap().len(), 4 * MAX_PENDING);
    }
}
