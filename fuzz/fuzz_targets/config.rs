//! The configuration file: `config::parse_file` and `config::validate` must never panic on
//! any text, and every refusal of a well-formed file must name the key at fault, as `--check`
//! promises an operator.
#![no_main]

use ciba_gateway::config::{parse_file, validate, Overrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A syntax error carries no key here: `Config::load` names the file in it.
    let Ok(file) = parse_file(text) else {
        return;
    };
    if let Err(e) = validate(file, &Overrides::default()) {
        assert!(!e.key.is_empty(), "an error without a key: {e}");
        assert!(!e.message.is_empty(), "an error without a message: {e}");
    }
});
