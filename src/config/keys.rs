//! Every key of the file is documented: the key list comes from the structs themselves
//! (serde's field lists, read by a deserializer that records what it is asked for), and
//! each key must have exactly one row in docs/configuration.md and a mention in
//! conf/gateway.toml.

use super::FileConfig;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeSet;

const DOCS: &str = include_str!("../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../conf/gateway.toml");

/// How a map's key (a client id, a path) is written in a documented key.
const ANY: &str = "<id>";

/// Answers every request of a `Deserialize` impl with a harmless value, recording the
/// dotted path of every struct field it is asked for; a map gets one entry named [`ANY`].
struct Recorder<'a> {
    path: String,
    seen: &'a RefCell<BTreeSet<String>>,
}

impl<'a> Recorder<'a> {
    fn at(&self, name: &str) -> Recorder<'a> {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Recorder {
            path,
            seen: self.seen,
        }
    }
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: a type the key list cannot walk",
            self.path
        )))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_bool(false)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(1)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(1)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(1)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(1)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i64(1)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_str("")
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_seq(
            de::value::SeqDeserializer::<std::iter::Empty<u8>, Error>::new(std::iter::empty()),
        )
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_map(Fields {
            names: vec![ANY],
            at: 0,
            parent: self,
            record: false,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_map(Fields {
            names: fields.to_vec(),
            at: 0,
            parent: self,
            record: true,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        // The first variant, as a unit: every closed set in the file is a plain word.
        v.visit_enum(variants[0].into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u128 f32 f64 char bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct identifier ignored_any
    }
}

/// A struct's fields (recorded) or a map's one entry, each value walked in turn.
struct Fields<'a> {
    names: Vec<&'static str>,
    at: usize,
    parent: Recorder<'a>,
    record: bool,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.names.get(self.at) else {
            return Ok(None);
        };
        seed.deserialize(StrDeserializer::<Error>::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.names[self.at];
        self.at += 1;
        let child = self.parent.at(name);
        if self.record {
            self.parent.seen.borrow_mut().insert(child.path.clone());
        }
        seed.deserialize(child)
    }
}

/// Every leaf key of the file, e.g. `server.listen`, `validation.clients.<id>.delivery_mode`.
fn file_keys() -> Vec<String> {
    let seen = RefCell::new(BTreeSet::new());
    FileConfig::deserialize(Recorder {
        path: String::new(),
        seen: &seen,
    })
    .expect("the key list walks every section");
    let all = seen.into_inner();
    all.iter()
        .filter(|k| !all.iter().any(|o| o.starts_with(&format!("{k}."))))
        .cloned()
        .collect()
}

/// The keys in the first cell of docs/configuration.md's table rows, in order.
fn documented_keys() -> Vec<&'static str> {
    DOCS.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(k, _)| k))
        .collect()
}

#[test]
fn the_key_list_is_the_file_s() {
    let keys = file_keys();
    for k in [
        "server.listen",
        "state.failure_mode",
        "validation.clients.<id>.binding_message_pattern",
        "rate_limit.clients.<id>.token.burst",
        "login_hint_token.keys.jwks",
        "profile.paths",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not in {keys:?}");
    }
    assert!(!keys
        .iter()
        .any(|k| k == "server" || k == "validation.clients"));
}

#[test]
fn every_key_has_one_row_in_the_configuration_reference() {
    let documented = documented_keys();
    let keys = file_keys();
    for key in &keys {
        let rows = documented.iter().filter(|d| *d == key).count();
        assert_eq!(
            rows, 1,
            "`{key}` has {rows} rows in docs/configuration.md; give it exactly one"
        );
    }
    for d in &documented {
        assert!(
            keys.iter().any(|k| k == d),
            "docs/configuration.md documents `{d}`, which the file does not have"
        );
    }
}

#[test]
fn the_example_file_mentions_every_section_key() {
    // conf/gateway.toml shows each key, set or commented, under its section; keys below a
    // section's own (a client's overrides, a rate's parts) are shown by their parent.
    let mentioned = |section: &str, name: &str| {
        let mut current = String::new();
        EXAMPLE.lines().any(|line| {
            let l = line.trim_start_matches(['#', ' ']);
            if let Some(header) = l.strip_prefix('[') {
                current = header
                    .split(['.', ']'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let sub = if name == ANY { "" } else { name };
                return current == section && header.starts_with(&format!("{section}.{sub}"));
            }
            current == section
                && l.strip_prefix(name)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    for key in file_keys() {
        let mut parts = key.splitn(3, '.');
        let (section, name) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            mentioned(section, name),
            "conf/gateway.toml does not show `{section}.{name}`"
        );
    }
}

#[test]
fn every_key_is_live_or_needs_a_restart() {
    // `live_keys::KEYS` is the one list of what a reload applies: every key of the file
    // falls under an entry, and every entry names keys the file has.
    let keys = file_keys();
    for key in &keys {
        assert!(
            super::live_keys::classify(key).is_some(),
            "`{key}` is in neither list of live_keys::KEYS; say whether a reload applies it"
        );
    }
    for (entry, _) in super::live_keys::KEYS {
        assert!(
            keys.iter()
                .any(|k| k == entry || k.starts_with(&format!("{entry}."))),
            "live_keys::KEYS names `{entry}`, which the file does not have"
        );
    }
}
