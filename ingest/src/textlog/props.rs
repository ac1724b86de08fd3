//! Property tests of plain log lines: any text, and logging prefixes with every field pushed
//! out of range (month 13, hour 24, second 60, long fractions, odd offsets), read in zones with
//! clock changes. Splitting and reading times never panics; a prefix of a real time reads as
//! that time; a line through the decoder is exactly one outcome, the same twice.

use agentmeter_schemas::{Position, SourceUri};
use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::config::DecodeConfig;
use crate::decode::{Decoded, Decoder, Outcome};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// Zones with whole-hour, half-hour and 45-minute offsets and clock changes.
const ZONES: [&str; 7] = [
    "UTC",
    "+05:30",
    "-0945",
    "Europe/Berlin",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Apia",
];

fn zone() -> impl Strategy<Value = LogTimezone> {
    proptest::sample::select(&ZONES[..]).prop_map(|z| z.parse().unwrap())
}

/// An `asctime`-shaped prefix whose fields may be out of range.
fn prefix() -> impl Strategy<Value = String> {
    let date = ("[0-9]{4}", 0u32..14, 0u32..33, prop_oneof![Just(' '), Just('T')]);
    let time = (0u32..26, 0u32..61, 0u32..62);
    let fraction = prop_oneof![Just(String::new()), "[,.][0-9]{0,12}"];
    let zone = prop_oneof![
        Just(String::new()),
        Just("Z".to_owned()),
        "[+-][0-9]{2}:?[0-9]{2}",
        "[+-][0-9:]{0,6}",
    ];
    let rest = prop_oneof![
        Just(" - agent - INFO - ".to_owned()),
        Just(" INFO agent ".to_owned()),
        Just("\t".to_owned()),
        Just(String::new()),
        "[ -~]{0,6}",
    ];
    (date, time, fraction, zone, rest).prop_map(|((y, mo, d, sep), (h, mi, s), f, z, rest)| {
        format!("{y}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{f}{z}{rest}")
    })
}

/// A Lambda or `LEVEL:logger:` prefix, or none.
fn other_prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[INFO]\t2026-10-01T08:00:00.123Z\tb7c1d2e3-0000-4000-8000-000000000000\t".to_owned()),
        Just("2026-10-01T08:00:00.123Z\tb7c1d2e3\tINFO\t".to_owned()),
        "\\[(INFO|WARN|x)\\]\t[0-9T:.Z+-]{0,30}\t[a-z0-9-]{0,8}\t",
        Just("INFO:agent:".to_owned()),
        Just("WARNING:".to_owned()),
        Just(String::new()),
    ]
}

/// What follows a prefix: a usage object (with or without its own time), other JSON, text.
fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":3,"output_tokens":4,"total_tokens":7}"#.to_owned()),
        Just(r#"usage {"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":3,"output_tokens":4,"total_tokens":7,"timestamp":"2026-10-01T08:00:00Z"} done"#.to_owned()),
        Just(r#"{"event":"inference_usage","tier":"#.to_owned()),
        Just(r#"{"event":"tool_call","name":"x"}"#.to_owned()),
        Just("START RequestId: b7c1d2e3 Version: $LATEST".to_owned()),
        "\\PC{0,60}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_splits_and_reads_its_time_without_panicking(
        line in prop_oneof![
            (prefix(), message()).prop_map(|(p, m)| p + &m),
            (other_prefix(), message()).prop_map(|(p, m)| p + &m),
            "\\PC{0,80}",
        ],
        zone in zone(),
    ) {
        if let Some(p) = split(&line) {
            prop_assert!(line.ends_with(p.message));
            if let Some(t) = p.time {
                let _ = t.to_ms(zone);
            }
        }
    }

    #[test]
    fn a_real_asctime_reads_as_the_time_it_states(
        days in 0i64..60_000,
        secs in 0u32..86_400,
        millis in 0u32..1000,
        zone in zone(),
    ) {
        let date = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(days as u64);
        let t = date.and_hms_milli_opt(secs / 3600, secs / 60 % 60, secs % 60, millis).unwrap();
        let line = format!("{} - agent - INFO - {{}}", t.format("%Y-%m-%d %H:%M:%S,%3f"));
        let p = split(&line).unwrap();
        prop_assert_eq!(p.time, Some(Stamp::Local(t)));
        prop_assert_eq!(p.message, " - agent - INFO - {}");
        let utc = p.time.unwrap().to_ms(LogTimezone::Utc);
        prop_assert_eq!(utc, Ok(t.and_utc().timestamp_millis()));
        // In a zone: an instant that reads back as the same wall-clock time, or a clock change.
        if let Ok(ms) = p.time.unwrap().to_ms(zone) {
            let back = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let local = match zone {
                LogTimezone::Utc => back.naive_utc(),
                LogTimezone::Fixed(o) => back.with_timezone(&o).naive_local(),
                LogTimezone::Named(tz) => back.with_timezone(&tz).naive_local(),
            };
            prop_assert_eq!(local, t);
        }
    }

    #[test]
    fn zones_parse_or_are_refused_and_print_as_they_parse(text in prop_oneof![
        "[+-][0-9:]{0,6}",
        "[A-Za-z_/+-]{0,24}",
        proptest::sample::select(&ZONES[..]).prop_map(str::to_owned),
    ]) {
        if let Ok(z) = text.parse::<LogTimezone>() {
            prop_assert_eq!(z.to_string().parse::<LogTimezone>(), Ok(z));
        }
    }

    #[test]
    fn a_log_line_is_one_outcome_and_decodes_the_same_twice(
        p in prop_oneof![prefix(), other_prefix()],
        m in message(),
        zone in zone(),
        default_time in proptest::option::of(1_600_000_000_000i64..1_900_000_000_000),
    ) {
        let line = p + &m;
        if line.trim().is_empty() || line.contains('\n') {
            return Ok(());
        }
        let cfg = DecodeConfig::default().with_log_times(zone, default_time);
        let decoder = Decoder::new(cfg);
        let decode = || {
            let mut out = Decoded::default();
            let pos = Position { line: Some(1), ..Position::default() };
            decoder.line(line.as_bytes(), &SourceUri::new("file:///agent.log"), pos, &mut out);
            out
        };
        let a = decode();
        prop_assert_eq!(a.outcomes.len(), 1, "{}: {:?}", line, a.outcomes);
        prop_assert_eq!(&a.outcomes, &decode().outcomes);
        if let Outcome::Reject(q) = &a.outcomes[0] {
            prop_assert!(!q.detail.is_empty());
            prop_assert_eq!(q.raw.as_deref(), Some(line.trim_end_matches('\r')));
        }
    }
}
