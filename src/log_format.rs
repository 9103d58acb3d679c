//! The text of a log line: tracing-subscriber's default format, with a shorter way to the
//! same text for the one line every request writes (`http::access_log`).
//!
//! The default format writes each part through `core::fmt` and passes the message through
//! its escaping writer one character at a time; for the access line that was about a tenth of
//! the work of answering `/healthz` (BENCHMARKS.md). The access line's parts are already
//! text: its message is built by `access_log`, the span's fields were formatted when the span
//! was made, and the timestamp's date and time change once a second. So it is copied, with
//! the same layout the default gives. Any other line, and every line on a terminal (which gets
//! colours), is the default's.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::http::access_log;

#[derive(Default)]
pub struct LineFormat {
    default: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let access_line =
            meta.target() == access_log::TARGET && *meta.level() == Level::INFO && meta.fields().len() == 1;
        if !access_line || writer.has_ansi_escapes() {
            return self.default.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer, SystemTime::now())?;
        // The default's level column: " INFO", then a space.
        writer.write_str(" INFO ")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                }
                writer.write_char(':')?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        // The message comes from `access_log::line`, which already escapes what the default's
        // escaping writer would: the path's C1 controls (the HTTP parser lets no other
        // control character through; the method is a token, the rest are numbers).
        let mut message = Message {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut message);
        message.result?;
        writer.write_char('\n')
    }
}

/// Writes the message field as it is; the access line has no other field.
struct Message<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for Message<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

thread_local! {
    /// The last second this thread wrote, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-05T01:52:03.845690Z`, as the default's `SystemTime` timer writes it, then a space.
fn write_timestamp(writer: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            let time = chrono::DateTime::from_timestamp(seconds as i64, 0).unwrap_or_default();
            text.clear();
            write!(text, "{}", time.format("%Y-%m-%dT%H:%M:%S"))?;
            *second = seconds;
        }
        writer.write_str(text)
    })?;
    let mut digits = itoa::Buffer::new();
    // A leading 1 keeps the zeros of a small fraction; it is not written.
    let micros = digits.format(1_000_000 + since_epoch.subsec_micros());
    writer.write_char('.')?;
    writer.write_str(&micros[1..])?;
    writer.write_str("Z ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log_writer::captured::Captured;

    /// The same events, logged once through `LineFormat` and once through the default.
    fn both(log: impl Fn()) -> (String, String) {
        let ours = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(ours.clone())
            .event_format(LineFormat::default())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        let theirs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, &log);
        (ours.text(), theirs.text())
    }

    /// A line without its timestamp, and the timestamp read back.
    fn split(line: &str) -> (chrono::DateTime<chrono::Utc>, &str) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(time.len(), "2026-12-05T01:52:03.845690Z".len(), "{line}");
        (time.parse().unwrap(), rest)
    }

    #[test]
    fn the_access_line_reads_exactly_as_the_default_format_writes_it() {
        let (our_text, their_text) = both(|| {
            let span = tracing::info_span!(target: access_log::TARGET, "request", id = "edge-42");
            let _entered = span.enter();
            // A plain path, and one with UTF-8 and a C1 control (U+009B), which the default
            // format escapes and the access line must escape the same way.
            for path in ["/healthz", "/caf\u{e9}/\u{9b}31m"] {
                let uri = path.parse().unwrap();
                let line = access_log::line(&http::Method::GET, &uri, 200, Duration::from_micros(12));
                tracing::info!(target: access_log::TARGET, "{line}");
            }
        });
        let (ours, theirs) = (
            our_text.lines().collect::<Vec<_>>(),
            their_text.lines().collect::<Vec<_>>(),
        );
        assert_eq!(ours.len(), 2);
        assert_eq!(theirs.len(), 2);
        for (ours, theirs) in ours.into_iter().zip(theirs) {
            let (our_time, our_rest) = split(ours);
            let (their_time, their_rest) = split(theirs);
            assert_eq!(our_rest, their_rest);
            assert!(our_rest.starts_with(" INFO request{id=\"edge-42\"}: gatehouse::http::access_log: served "));
            assert!(
                (their_time - our_time).num_seconds().abs() <= 1,
                "{our_time} {their_time}"
            );
        }
        assert!(
            their_text.contains("\\u{9b}31m"),
            "the default format escapes it: {their_text}"
        );
    }

    #[test]
    fn other_lines_are_the_default_format() {
        let (ours, theirs) = both(|| {
            tracing::warn!(error = "a \"quoted\" reason", "could not write last-seen times");
            tracing::info!(target: access_log::TARGET, status = 200, "not the access line's shape");
        });
        let rest = |text: &str| text.lines().map(|l| split(l).1.to_owned()).collect::<Vec<_>>();
        assert_eq!(rest(&ours), rest(&theirs));
        assert_eq!(ours.lines().count(), 2);
    }

    #[test]
    fn the_timestamp_keeps_the_zeros_of_its_fraction_and_follows_the_clock() {
        let mut text = String::new();
        let at = |micros: u64| UNIX_EPOCH + std::time::Duration::from_micros(micros);
        write_timestamp(&mut Writer::new(&mut text), at(1_764_899_523_000_042)).unwrap();
        assert_eq!(text, "2025-12-05T01:52:03.000042Z ");
        text.clear();
        write_timestamp(&mut Writer::new(&mut text), at(1_764_899_524_999_999)).unwrap();
        assert_eq!(text, "2025-12-05T01:52:04.999999Z ");
    }
}
