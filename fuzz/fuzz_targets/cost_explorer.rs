//! Cost Explorer `GetCostAndUsage` responses as `invoice --costs-file` reads them: a report or
//! an error with a message, and the same answer twice.
#![no_main]

use agentmeter_reports::costs::{CostQuery, parse_file};
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let query = CostQuery::month(NaiveDate::from_ymd_opt(2026, 10, 1).expect("a date"));
    let a = parse_file(text, &query).map_err(|e| e.to_string());
    if let Err(e) = &a {
        assert!(!e.is_empty());
    }
    let b = parse_file(text, &query).map_err(|e| e.to_string());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
});
