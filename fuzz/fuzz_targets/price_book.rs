//! The price book (`prices.toml`): a book or an error with a message, the same answer twice.
#![no_main]

use agentmeter_reports::prices::PriceBook;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The book's id index is a hash map, printed in no fixed order: compare what it prices.
    let read = || {
        PriceBook::from_toml_str(text)
            .map(|b| {
                format!("{} {:?} {:?}", b.version(), b.models(), b.plans().collect::<Vec<_>>())
            })
            .map_err(|e| e.to_string())
    };
    let a = read();
    if let Err(e) = &a {
        assert!(!e.is_empty());
    }
    assert_eq!(a, read());
});
