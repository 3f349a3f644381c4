//! Logging that never calls into the host from a Rust thread.
//!
//! A [`Logger`] is a cheap, cloneable handle with a maximum [`Level`] and a [`Sink`]:
//!
//! - [`Sink::Stderr`] (the CLI's default) formats each record on the calling thread as
//!   `2026-11-27T07:00:00Z INFO msrpcast::runtime: text` and writes it to standard error.
//! - [`Sink::Queue`] puts each record into a bounded queue (crossbeam-channel) from which the host
//!   pulls with [`Logger::pop`] on its own thread. After every push an optional notify hook runs
//!   (the C ABI uses it to make a pollable fd readable); the hook must be cheap and must not log.
//!   When the queue is full the record is dropped and counted; one `N log records dropped`
//!   warning is emitted later, before the next record that fits, or by `pop` once the queue
//!   has been drained.
//! - [`Sink::Discard`] drops everything (tests, benchmarks).
//!
//! Control characters in messages (CR, LF, ESC, …) are escaped when the record is made, so an
//! untrusted value (a file name, a SIP URI) cannot forge extra log lines in any sink.
//!
//! Log with the methods ([`Logger::info`] and friends), the calling module's path as the target
//! and `format_args!`: `logger.info(module_path!(), format_args!("sent {n} bytes"))`. The message
//! is not formatted when the level is disabled (its arguments are still evaluated).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use crate::level::{Level, ParseLevelError};

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub level: Level,
    /// Where it comes from, usually a module path such as `msrpcast::runtime::spool`.
    pub target: &'static str,
    /// The text, with control characters already escaped.
    pub message: String,
    pub time: SystemTime,
}

impl fmt::Display for Record {
    /// `2026-11-27T07:00:00Z INFO msrpcast::runtime: text`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            Rfc3339(self.time),
            self.level,
            self.target,
            self.message
        )
    }
}

/// Formats a time as `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds).
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Times before 1970 are not expected; they print as the epoch.
        let secs = self
            .0
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            y,
            m,
            d,
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Proleptic Gregorian date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (the well-known "days to civil" computation over 400-year eras).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Hook run after a record was queued (see [`Sink::Queue`]).
pub type NotifyFn = Arc<dyn Fn() + Send + Sync>;

/// Where records go.
#[derive(Clone, Default)]
pub enum Sink {
    /// Formatted, one line each, on standard error, written by the logging thread.
    #[default]
    Stderr,
    /// Bounded queue the host drains with [`Logger::pop`]; `notify` runs after each push.
    Queue {
        capacity: usize,
        notify: Option<NotifyFn>,
    },
    /// Everything is dropped.
    Discard,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Stderr => f.write_str("Stderr"),
            Sink::Queue { capacity, notify } => f
                .debug_struct("Queue")
                .field("capacity", capacity)
                .field("notify", &notify.is_some())
                .finish(),
            Sink::Discard => f.write_str("Discard"),
        }
    }
}

/// Default capacity of a [`Sink::Queue`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Target of the "records dropped" notice.
const SELF_TARGET: &str = "msrpcast::runtime::log";

enum Out {
    Stderr,
    Queue {
        tx: Sender<Record>,
        rx: Receiver<Record>,
        notify: Option<NotifyFn>,
    },
    Discard,
}

struct Inner {
    max_level: AtomicU8,
    out: Out,
    /// Records dropped since the last "dropped" notice.
    dropped: AtomicU64,
    /// Records dropped since the logger was made.
    dropped_total: AtomicU64,
}

/// A cloneable logging handle; clones share the level, the queue and the drop counter.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("max_level", &self.max_level())
            .field("dropped_total", &self.dropped_total())
            .finish()
    }
}

impl Logger {
    /// A logger with the given maximum level and sink. A queue capacity of 0 is taken as 1.
    pub fn new(max_level: Level, sink: Sink) -> Logger {
        let out = match sink {
            Sink::Stderr => Out::Stderr,
            Sink::Discard => Out::Discard,
            Sink::Queue { capacity, notify } => {
                let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
                Out::Queue { tx, rx, notify }
            }
        };
        Logger {
            inner: Arc::new(Inner {
                max_level: AtomicU8::new(max_level as u8),
                out,
                dropped: AtomicU64::new(0),
                dropped_total: AtomicU64::new(0),
            }),
        }
    }

    /// Formatted lines on standard error.
    pub fn stderr(max_level: Level) -> Logger {
        Logger::new(max_level, Sink::Stderr)
    }

    /// A bounded queue of `capacity` records for the host to pull.
    pub fn queue(max_level: Level, capacity: usize, notify: Option<NotifyFn>) -> Logger {
        Logger::new(max_level, Sink::Queue { capacity, notify })
    }

    /// A logger that drops everything.
    pub fn discard() -> Logger {
        Logger::new(Level::Error, Sink::Discard)
    }

    pub fn max_level(&self) -> Level {
        Level::from_u8(self.inner.max_level.load(Ordering::Relaxed))
    }

    pub fn set_max_level(&self, level: Level) {
        self.inner.max_level.store(level as u8, Ordering::Relaxed);
    }

    /// Whether a record of `level` would be kept; check it before building an expensive message.
    pub fn enabled(&self, level: Level) -> bool {
        !matches!(self.inner.out, Out::Discard) && level <= self.max_level()
    }

    /// Records dropped because the queue was full, since the logger was made.
    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Logs one record if `level` is enabled.
    pub fn log(&self, level: Level, target: &'static str, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let record = Record {
            level,
            target,
            message: escape_controls(args),
            time: SystemTime::now(),
        };
        self.emit(record);
    }

    pub fn error(&self, target: &'static str, args: fmt::Arguments<'_>) {
        self.log(Level::Error, target, args);
    }

    pub fn warn(&self, target: &'static str, args: fmt::Arguments<'_>) {
        self.log(Level::Warn, target, args);
    }

    pub fn info(&self, target: &'static str, args: fmt::Arguments<'_>) {
        self.log(Level::Info, target, args);
    }

    pub fn debug(&self, target: &'static str, args: fmt::Arguments<'_>) {
        self.log(Level::Debug, target, args);
    }

    /// The next queued record, if any (only [`Sink::Queue`]; other sinks always return `None`).
    /// When the queue is empty and records were dropped, returns one warning that says how many.
    pub fn pop(&self) -> Option<Record> {
        let Out::Queue { rx, .. } = &self.inner.out else {
            return None;
        };
        match rx.try_recv() {
            Ok(r) => Some(r),
            Err(_) => {
                let n = self.inner.dropped.swap(0, Ordering::AcqRel);
                (n > 0).then(|| dropped_notice(n))
            }
        }
    }

    /// Number of records waiting in the queue (0 for other sinks).
    pub fn queued(&self) -> usize {
        match &self.inner.out {
            Out::Queue { rx, .. } => rx.len(),
            _ => 0,
        }
    }

    fn emit(&self, record: Record) {
        match &self.inner.out {
            Out::Discard => {}
            Out::Stderr => {
                // Nothing sensible can be done when standard error is gone.
                let _ = writeln!(std::io::stderr().lock(), "{record}");
            }
            Out::Queue { tx, notify, .. } => {
                // A notice for earlier drops goes first, so the order stays truthful.
                let pending = self.inner.dropped.swap(0, Ordering::AcqRel);
                if pending > 0 && tx.try_send(dropped_notice(pending)).is_err() {
                    // Still full: keep counting, this record is dropped too.
                    self.inner.dropped.fetch_add(pending, Ordering::AcqRel);
                    self.count_drop();
                    return;
                }
                match tx.try_send(record) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                        self.count_drop();
                    }
                }
                if let Some(n) = notify {
                    n();
                }
            }
        }
    }

    fn count_drop(&self) {
        self.inner.dropped.fetch_add(1, Ordering::AcqRel);
        self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn dropped_notice(n: u64) -> Record {
    Record {
        level: Level::Warn,
        target: SELF_TARGET,
        message: format!("{n} log records dropped"),
        time: SystemTime::now(),
    }
}

/// Formats `args`, escaping control characters (`\n`, `\r`, `\t`, others as `\u{..}`) and
/// backslashes are left as they are.
fn escape_controls(args: fmt::Arguments<'_>) -> String {
    let raw = match args.as_str() {
        Some(s) => s.to_owned(),
        None => args.to_string(),
    };
    if !raw.chars().any(char::is_control) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn level_order_and_parse() {
        assert!(Level::Error < Level::Warn && Level::Warn < Level::Info);
        assert!(Level::Info < Level::Debug);
        assert_eq!("DEBUG".parse::<Level>(), Ok(Level::Debug));
        assert_eq!(" warn ".parse::<Level>(), Ok(Level::Warn));
        assert_eq!("warning".parse::<Level>(), Ok(Level::Warn));
        assert_eq!("error".parse::<Level>(), Ok(Level::Error));
        assert_eq!("info".parse::<Level>(), Ok(Level::Info));
        assert_eq!("trace".parse::<Level>(), Err(ParseLevelError));
        assert_eq!("".parse::<Level>(), Err(ParseLevelError));
        for l in [Level::Error, Level::Warn, Level::Info, Level::Debug] {
            assert_eq!(l.name().parse::<Level>(), Ok(l));
            assert_eq!(Level::from_u8(l as u8), l);
        }
    }

    #[test]
    fn time_format() {
        assert_eq!(Rfc3339(at(0)).to_string(), "1970-01-01T00:00:00Z");
        // 2026-11-27T07:00:00Z
        assert_eq!(
            Rfc3339(at(1_795_762_800)).to_string(),
            "2026-11-27T07:00:00Z"
        );
        // Leap day and the end of a year.
        assert_eq!(Rfc3339(at(951_782_400)).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(
            Rfc3339(at(1_704_067_199)).to_string(),
            "2023-12-31T23:59:59Z"
        );
    }

    #[test]
    fn record_format() {
        let r = Record {
            level: Level::Info,
            target: "msrpcast::runtime",
            message: "text".into(),
            time: at(1_795_762_800),
        };
        assert_eq!(
            r.to_string(),
            "2026-11-27T07:00:00Z INFO msrpcast::runtime: text"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let name = "evil\nname\r\x1b[31m\tok";
        let s = escape_controls(format_args!("file {name}"));
        assert_eq!(s, "file evil\\nname\\r\\u{1b}[31m\\tok");
        assert!(!s.contains('\n'));
        assert_eq!(escape_controls(format_args!("plain é")), "plain é");
    }

    #[test]
    fn queue_respects_level_and_order() {
        let log = Logger::queue(Level::Info, 16, None);
        log.debug("t", format_args!("hidden"));
        log.info("t", format_args!("one {}", 1));
        log.error("t", format_args!("two"));
        assert_eq!(log.queued(), 2);
        let a = log.pop().map(|r| r.message);
        let b = log.pop().map(|r| (r.level, r.message));
        assert_eq!(a.as_deref(), Some("one 1"));
        assert_eq!(b, Some((Level::Error, "two".to_string())));
        assert!(log.pop().is_none());
        log.set_max_level(Level::Debug);
        log.debug("t", format_args!("now shown"));
        assert_eq!(log.pop().map(|r| r.message).as_deref(), Some("now shown"));
    }

    #[test]
    fn full_queue_drops_and_reports_once() {
        let log = Logger::queue(Level::Debug, 3, None);
        for i in 0..10 {
            log.info("t", format_args!("m{i}"));
        }
        assert_eq!(log.dropped_total(), 7);
        let got: Vec<String> = std::iter::from_fn(|| log.pop())
            .map(|r| r.message)
            .collect();
        assert_eq!(got, vec!["m0", "m1", "m2", "7 log records dropped"]);
        assert!(log.pop().is_none());
    }

    #[test]
    fn dropped_notice_precedes_next_record() {
        let log = Logger::queue(Level::Debug, 2, None);
        for i in 0..4 {
            log.warn("t", format_args!("m{i}"));
        }
        // Make room for the notice and one more record.
        assert_eq!(log.pop().map(|r| r.message).as_deref(), Some("m0"));
        assert_eq!(log.pop().map(|r| r.message).as_deref(), Some("m1"));
        log.warn("t", format_args!("later"));
        let got: Vec<String> = std::iter::from_fn(|| log.pop())
            .map(|r| r.message)
            .collect();
        assert_eq!(got, vec!["2 log records dropped", "later"]);
        assert_eq!(log.dropped_total(), 2);
    }

    #[test]
    fn notify_runs_after_each_push() {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let log = Logger::queue(
            Level::Info,
            8,
            Some(Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })),
        );
        log.info("t", format_args!("a"));
        log.debug("t", format_args!("filtered"));
        log.info("t", format_args!("b"));
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn discard_and_stderr_sinks() {
        let d = Logger::discard();
        assert!(!d.enabled(Level::Error));
        d.error("t", format_args!("nothing"));
        assert!(d.pop().is_none());
        let s = Logger::stderr(Level::Error);
        assert!(s.enabled(Level::Error));
        assert!(!s.enabled(Level::Warn));
        s.error("msrpcast::test", format_args!("stderr sink test line"));
        assert!(s.pop().is_none());
    }

    #[test]
    fn concurrent_producers_lose_nothing_when_room() {
        let log = Logger::queue(Level::Info, 4000, None);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = log.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        l.info("t", format_args!("{t}-{i}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::iter::from_fn(|| log.pop()).count(), 4000);
        assert_eq!(log.dropped_total(), 0);
    }
}
