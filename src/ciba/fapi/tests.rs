//! Unit tests of the FAPI rules.
