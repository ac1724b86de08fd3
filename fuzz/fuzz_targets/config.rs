//! `agentmeter.toml`, the configuration of `agentmeter run`: a configuration or an error with
//! a message. The binary has no library; its parser is compiled here from its own source.
#![no_main]
#![allow(dead_code, unused_imports)]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[path = "../../src/cli.rs"]
mod cli;
#[path = "../../src/run_config.rs"]
mod run_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let a = run_config::parse(text, Path::new("/srv/agentmeter"));
    if let Err(e) = &a {
        assert!(!e.is_empty());
    }
    let b = run_config::parse(text, Path::new("/srv/agentmeter"));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
});
