//! Log files as agents write them: a logging prefix, then the usage JSON.
//!
//! Python's `logging` writes `%(asctime)s - %(name)s - %(levelname)s - %(message)s` (or the
//! variants `%(asctime)s %(levelname)s %(name)s %(message)s`, with or without milliseconds);
//! the prefixes recognised in CloudWatch messages (`LEVEL:logger:`, the Lambda formats) may
//! appear in files too. `asctime` carries no zone: it is read in the configured
//! [`LogTimezone`] (UTC by default).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

use crate::cloudwatch::LEVELS;

/// The zone of times written without one (`asctime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTimezone {
    /// Coordinated Universal Time.
    #[default]
    Utc,
    /// A fixed offset such as `+02:00`.
    Fixed(FixedOffset),
    /// An IANA zone such as `Europe/Berlin`, with its clock changes.
    Named(chrono_tz::Tz),
}

/// A time zone that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time zone: give UTC, an offset such as +02:00, or an IANA name such as Europe/Berlin"
)]
pub struct BadTimezone(String);

impl FromStr for LogTimezone {
    type Err = BadTimezone;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(LogTimezone::Utc);
        }
        if s.starts_with(['+', '-']) {
            return parse_offset(s).map(LogTimezone::Fixed).ok_or_else(|| BadTimezone(s.into()));
        }
        s.parse::<chrono_tz::Tz>().map(LogTimezone::Named).map_err(|_| BadTimezone(s.into()))
    }
}

impl fmt::Display for LogTimezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTimezone::Utc => f.write_str("UTC"),
            LogTimezone::Fixed(o) => write!(f, "{o}"),
            LogTimezone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// `+HH:MM`, `-HH:MM` or `+HHMM`.
fn parse_offset(s: &str) -> Option<FixedOffset> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The time a logging prefix states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Wall-clock time without a zone (`asctime`).
    Local(NaiveDateTime),
    /// An instant (the Lambda formats write RFC 3339 in UTC).
    Instant(DateTime<FixedOffset>),
}

impl Stamp {
    /// Milliseconds since the epoch, reading a local time in `zone`. A local time that a
    /// clock change skips does not exist: `Err` says so. One that occurs twice (the hour
    /// after the clocks go back) is read as the first.
    pub(crate) fn to_ms(self, zone: LogTimezone) -> Result<i64, String> {
        let local = match self {
            Stamp::Instant(t) => return Ok(t.timestamp_millis()),
            Stamp::Local(t) => t,
        };
        let one = |r: LocalResult<i64>| match r {
            LocalResult::Single(ms) | LocalResult::Ambiguous(ms, _) => Ok(ms),
            LocalResult::None => Err(format!("{local} does not exist in {zone} (a clock change)")),
        };
        match zone {
            LogTimezone::Utc => Ok(local.and_utc().timestamp_millis()),
            LogTimezone::Fixed(o) => {
                one(o.from_local_datetime(&local).map(|t| t.timestamp_millis()))
            }
            LogTimezone::Named(tz) => {
                one(tz.from_local_datetime(&local).map(|t| t.timestamp_millis()))
            }
        }
    }
}

/// A line's logging prefix: its time, if it states one, and the message after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Prefixed<'l> {
    pub time: Option<Stamp>,
    pub message: &'l str,
}

/// Splits a known logging prefix off `line`; `None` when it has none.
pub(crate) fn split(line: &str) -> Option<Prefixed<'_>> {
    if let Some(p) = lambda(line) {
        return Some(p);
    }
    if let Some((time, rest)) = asctime(line) {
        // Whatever the format puts between the time and the message (name, level, dashes),
        // the message is what follows: its JSON is found from its first brace.
        return Some(Prefixed { time: Some(time), message: rest });
    }
    // Python's basicConfig default: `LEVEL:logger:message`.
    let (level, rest) = line.split_once(':')?;
    LEVELS.contains(&level).then(|| {
        let message = rest.split_once(':').map_or(rest, |(_, m)| m);
        Prefixed { time: None, message }
    })
}

/// The Lambda text formats: `[LEVEL]\t<time>\t<request id>\t<message>` and
/// `<time>\t<request id>\t<LEVEL>\t<message>`.
fn lambda(line: &str) -> Option<Prefixed<'_>> {
    let fields: Vec<&str> = line.splitn(4, '\t').collect();
    let [a, b, c, message] = fields.as_slice() else { return None };
    let bracketed = a.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
    let time = if bracketed.is_some_and(|l| LEVELS.contains(&l)) {
        b
    } else if LEVELS.contains(c) {
        a
    } else {
        return None;
    };
    let t = DateTime::parse_from_rfc3339(time).ok()?;
    Some(Prefixed { time: Some(Stamp::Instant(t)), message })
}

/// `YYYY-MM-DD HH:MM:SS` (or a `T`), then optionally `,mmm` or `.fraction`, then optionally a
/// zone (`Z`, `+HH:MM`, `+HHMM`), then a separator; returns the time and the rest.
fn asctime(line: &str) -> Option<(Stamp, &str)> {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone()).is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b' ' | b'T'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| line[r].parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let mut i = 19;
    let mut nanos = 0u32;
    if matches!(b.get(i), Some(b',' | b'.')) {
        let start = i + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start || end - start > 9 {
            return None;
        }
        let frac = &line[start..end];
        nanos = frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32);
        i = end;
    }
    let time = NaiveTime::from_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    let local = NaiveDateTime::new(date, time);
    let (stamp, i) = match b.get(i) {
        Some(b'Z') => (Stamp::Instant(local.and_utc().fixed_offset()), i + 1),
        Some(b'+' | b'-') => {
            let zone = line[i..].split([' ', '\t']).next()?;
            let offset = parse_offset(zone)?;
            let t = offset.from_local_datetime(&local).single()?;
            (Stamp::Instant(t), i + zone.len())
        }
        _ => (Stamp::Local(local), i),
    };
    // The time must be a field of its own.
    let rest = &line[i..];
    rest.starts_with([' ', '\t']).then_some((stamp, rest))
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"event":"inference_usage"}"#;

    fn ms(line: &str, zone: &str) -> Result<i64, String> {
        let p = split(line).expect("a prefix");
        assert!(p.message.trim_start().ends_with(JSON) || p.message.contains(JSON), "{p:?}");
        p.time.expect("a time").to_ms(zone.parse().unwrap())
    }

    #[test]
    fn python_formats_with_and_without_milliseconds() {
        // 2026-10-01T08:00:00.123Z
        let t = 1_790_841_600_123;
        for line in [
            format!("2026-10-01 08:00:00,123 - agent.usage - INFO - {JSON}"),
            format!("2026-10-01 08:00:00,123 INFO agent.usage {JSON}"),
            format!("2026-10-01 08:00:00.123 [INFO] agent.usage: {JSON}"),
            format!("2026-10-01T08:00:00.123 - INFO - {JSON}"),
            format!("2026-10-01T08:00:00.123456Z INFO {JSON}"),
        ] {
            assert_eq!(ms(&line, "UTC"), Ok(t), "{line}");
        }
        let line = format!("2026-10-01 08:00:00 - agent.usage - INFO - {JSON}");
        assert_eq!(ms(&line, "UTC"), Ok(t - 123));
    }

    #[test]
    fn asctime_is_read_in_the_configured_zone() {
        let line = format!("2026-10-01 10:00:00,000 - agent - INFO - {JSON}");
        let utc_8 = 1_790_841_600_000;
        assert_eq!(ms(&line, "+02:00"), Ok(utc_8));
        assert_eq!(ms(&line, "Europe/Berlin"), Ok(utc_8)); // summer time, UTC+2
        let winter = format!("2026-12-01 09:00:00,000 - agent - INFO - {JSON}");
        assert_eq!(ms(&winter, "Europe/Berlin"), ms(&winter.replace("09:00", "08:00"), "UTC"));
        // A zone in the line wins over the configured one.
        let zoned = format!("2026-10-01T08:00:00+00:00 INFO {JSON}");
        assert_eq!(ms(&zoned, "Europe/Berlin"), Ok(utc_8));
    }

    #[test]
    fn clock_changes() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29 and repeats 02:00-03:00 on 2026-10-25.
        let gap = format!("2026-03-29 02:30:00,000 - a - INFO - {JSON}");
        assert_eq!(
            ms(&gap, "Europe/Berlin"),
            Err("2026-03-29 02:30:00 does not exist in Europe/Berlin (a clock change)".into())
        );
        let twice = format!("2026-10-25 02:30:00,000 - a - INFO - {JSON}");
        let first = ms(&format!("2026-10-25 00:30:00,000 - a - INFO - {JSON}"), "UTC").unwrap();
        assert_eq!(ms(&twice, "Europe/Berlin"), Ok(first));
    }

    #[test]
    fn lambda_and_level_prefixes() {
        let line = format!("[INFO]\t2026-10-01T08:00:00.123Z\treq-1\t{JSON}");
        let p = split(&line).unwrap();
        assert_eq!(
            (p.time.unwrap().to_ms(LogTimezone::Utc), p.message),
            (Ok(1_790_841_600_123), JSON)
        );
        let line = format!("2026-10-01T08:00:00.123Z\treq-1\tINFO\t{JSON}");
        let p = split(&line).unwrap();
        assert_eq!(
            (p.time.unwrap().to_ms(LogTimezone::Utc), p.message),
            (Ok(1_790_841_600_123), JSON)
        );
        let line = format!("INFO:agent.usage:{JSON}");
        let p = split(&line).unwrap();
        assert_eq!((p.time, p.message), (None, JSON));
    }

    #[test]
    fn not_prefixes() {
        for line in [
            JSON.to_owned(),
            "Traceback (most recent call last):".into(),
            "2026-10-01 is a date".into(),
            format!("2026-13-01 08:00:00,123 - a - INFO - {JSON}"),
            format!("2026-10-01 08:00:00,123{JSON}"),
            format!("note:{JSON}"),
        ] {
            assert_eq!(split(&line), None, "{line}");
        }
    }

    #[test]
    fn zones_parse_or_say_what_is_accepted() {
        assert_eq!("utc".parse::<LogTimezone>(), Ok(LogTimezone::Utc));
        assert_eq!("+0530".parse::<LogTimezone>().unwrap().to_string(), "+05:30");
        assert_eq!(
            "America/New_York".parse::<LogTimezone>().unwrap().to_string(),
            "America/New_York"
        );
        assert_eq!(
            "CEST".parse::<LogTimezone>().unwrap_err().to_string(),
            "\"CEST\" is not a time zone: give UTC, an offset such as +02:00, or an IANA name such as Europe/Berlin"
        );
        assert!("+25:00".parse::<LogTimezone>().is_err());
    }
}
