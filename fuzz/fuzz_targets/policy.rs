//! The flags policy (`policy.toml`): a policy or an error with a message, the same answer
//! twice.
#![no_main]

use agentmeter_reports::flags::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let a = Policy::from_toml_str(text).map_err(|e| e.to_string());
    if let Err(e) = &a {
        assert!(!e.is_empty());
    }
    let b = Policy::from_toml_str(text).map_err(|e| e.to_string());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
});
