//! `login_hint_token::decode_standard_base64` (vectorized) must give the same answer as
//! the `base64` crate's padding-indifferent standard engine for every input.
#![no_main]

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine};
use ciba_gateway::ciba::login_hint_token::decode_standard_base64;
use libfuzzer_sys::fuzz_target;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        decode_standard_base64(text),
        LENIENT.decode(text).ok(),
        "the two decoders disagree"
    );
});
