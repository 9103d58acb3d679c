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
//!
//! The span's fields are formatted once, when the span is made, by `LineFields`: the
//! default's text, with a shorter way for the request span's one field. The default writes
//! a string field through `core::fmt`, its name through a terminal-colour wrapper even when
//! colours are off, and its value through `Debug`'s escaping one character at a time. That
//! was about 6% of the instructions of a webhook request.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
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
        // The request span is a root: the line is only ever inside other spans where an
        // embedding program opens them, and the default writes that chain.
        let span = ctx.parent_span();
        if span.as_ref().is_some_and(|span| span.parent().is_some()) {
            return self.default.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer, SystemTime::now())?;
        // The default's level column: " INFO", then a space.
        writer.write_str(" INFO ")?;
        if let Some(span) = span {
            writer.write_str(span.name())?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                if !fields.is_empty() {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
            }
            writer.write_str(": ")?;
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
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.result = self.writer.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// Fields as the default writes them. A lone `id` string that `Debug` would write unchanged
/// (printable ASCII but `"` and `\`), the request span's, is copied between quotes instead.
/// Any other id, from a gateway say, goes through the default's escaping.
#[derive(Default)]
pub struct LineFields {
    default: DefaultFields,
}

impl<'writer> FormatFields<'writer> for LineFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        if !writer.has_ansi_escapes() {
            let mut shape = LonePlainId::default();
            fields.record(&mut shape);
            if shape.fields == 1 && shape.plain_id {
                let mut copy = CopyId {
                    writer: &mut writer,
                    result: Ok(()),
                };
                fields.record(&mut copy);
                return copy.result;
            }
        }
        self.default.format_fields(writer, fields)
    }
}

/// How many fields there are, and whether the last was an `id` needing no escaping.
#[derive(Default)]
struct LonePlainId {
    fields: usize,
    plain_id: bool,
}

impl Visit for LonePlainId {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields += 1;
        // A fold rather than `all`: without an early exit the loop is vectorised.
        self.plain_id = field.name() == "id"
            && value.bytes().fold(true, |plain, b| {
                plain & matches!(b, b' '..=b'~') & (b != b'"') & (b != b'\\')
            });
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {
        self.fields += 1;
        self.plain_id = false;
    }
}

/// Writes `id="..."` for the one field `LonePlainId` accepted.
struct CopyId<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for CopyId<'_, '_> {
    fn record_str(&mut self, _: &Field, value: &str) {
        // In one write where it fits, so the span's text is allocated once, at its size,
        // rather than grown three times; a UUID takes 41 bytes.
        let mut text = [0u8; 64];
        let length = value.len() + 5;
        if let Some(text) = text.get_mut(..length) {
            text[..4].copy_from_slice(b"id=\"");
            text[4..length - 1].copy_from_slice(value.as_bytes());
            text[length - 1] = b'"';
            if let Ok(text) = std::str::from_utf8(text) {
                self.result = self.writer.write_str(text);
                return;
            }
        }
        self.result = (|| {
            self.writer.write_str("id=\"")?;
            self.writer.write_str(value)?;
            self.writer.write_char('"')
        })();
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
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
            .fmt_fields(LineFields::default())
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
                tracing::info!(target: access_log::TARGET, message = line.as_str());
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
            // The access line's shape, as a format string and inside a span of an embedding
            // program's: both still read as the default writes them.
            let outer = tracing::info_span!("embedding", worker = 3);
            outer.in_scope(|| {
                let request = tracing::info_span!(target: access_log::TARGET, "request", id = "edge-42");
                request.in_scope(|| {
                    tracing::info!(target: access_log::TARGET, message = "served method=GET path=/ status=200");
                    tracing::info!(target: access_log::TARGET, "served {}", "method=GET path=/ status=200");
                });
            });
        });
        let rest = |text: &str| text.lines().map(|l| split(l).1.to_owned()).collect::<Vec<_>>();
        assert_eq!(rest(&ours), rest(&theirs));
        assert_eq!(ours.lines().count(), 4);
        assert!(
            ours.contains(" INFO embedding{worker=3}:request{id=\"edge-42\"}: "),
            "{ours}"
        );
    }

    #[test]
    fn span_fields_read_exactly_as_the_default_format_writes_them() {
        let (ours, theirs) = both(|| {
            // The shortcut's case, then ids it must leave to the default's escaping, then
            // spans whose fields are not one lone id.
            let long = "a-gateway-id-longer-than-one-write-".repeat(3);
            let ids = ["75d0cb81-5c1e-4b4e-9a51-8f0b1f3b0c2d", "edge-42", "it's ~ok", "", &long];
            let escaped = ["a \"quoted\" id", "back\\slash", "tab\there", "caf\u{e9}", "\u{9b}31m"];
            for id in ids.into_iter().chain(escaped) {
                let span = tracing::info_span!("request", id);
                let _entered = span.enter();
                tracing::warn!("inside");
            }
            let span = tracing::info_span!("request", id = "edge-42", user = "someone");
            span.in_scope(|| tracing::warn!("two fields"));
            let span = tracing::info_span!("request", other = "edge-42");
            span.in_scope(|| tracing::warn!("another name"));
            let span = tracing::info_span!("request", id = 42);
            span.in_scope(|| tracing::warn!("a number"));
            let span = tracing::info_span!("request", id = tracing::field::Empty);
            span.record("id", "recorded-later");
            span.in_scope(|| tracing::warn!("recorded"));
        });
        let rest = |text: &str| text.lines().map(|l| split(l).1.to_owned()).collect::<Vec<_>>();
        assert_eq!(rest(&ours), rest(&theirs));
        assert_eq!(ours.lines().count(), 14);
        assert!(
            ours.contains("request{id=\"75d0cb81-5c1e-4b4e-9a51-8f0b1f3b0c2d\"}: "),
            "{ours}"
        );
        assert!(ours.contains("request{id=\"a \\\"quoted\\\" id\"}: "), "{ours}");
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
