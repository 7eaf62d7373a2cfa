//! The strict JSON checks: well-formed JSON read by `serde_json` through visitors that refuse
//! duplicate keys and nesting beyond a budget, exactly as the tolerant parser does (a unit
//! test holds them together). One walk serves two purposes: measuring a value's depth without
//! building anything ([`check_strict`]), and building its tree ([`parse_strict`]); a third
//! visitor keeps only a token's top level ([`parse_top`]). Also [`is_compact`], whether JSON
//! text is already in the compact form the gateway forwards.

use super::HARD_MAX_DEPTH;
use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::marker::PhantomData;

/// Whether JSON text has no whitespace outside its strings (the text is known to be valid).
pub(super) fn is_compact(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Valid JSON never holds a raw tab or line break inside a string: one anywhere is
    // whitespace between tokens.
    if memchr::memchr3(b'\t', b'\n', b'\r', bytes).is_some() {
        return false;
    }
    // Of two neighbouring JSON tokens at least one is structural, so a space between
    // tokens touches a structural byte, another space or an end of the text. A space with
    // other bytes on both sides is inside a string, as the spaces of a typical token are:
    // only a text with a space of the first kind needs the byte-by-byte walk.
    let touches_structure = |at: Option<&u8>| {
        at.is_none_or(|b| matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b' '))
    };
    let ambiguous = memchr::memchr_iter(b' ', bytes).any(|at| {
        touches_structure(at.checked_sub(1).and_then(|k| bytes.get(k)))
            || touches_structure(bytes.get(at + 1))
    });
    !ambiguous || compact_by_walk(bytes)
}

/// [`is_compact`] by following string state byte by byte.
pub(super) fn compact_by_walk(bytes: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if escaped {
            escaped = false;
        } else if in_string {
            escaped = b == b'\\';
            in_string = b != b'"';
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return false;
        } else {
            in_string = b == b'"';
        }
    }
    true
}

/// Checks well-formed JSON like [`parse_strict`] without building it; returns its depth
/// (scalars 0, `{}` 1).
pub(super) fn check_strict(text: &str, max_depth: usize) -> Option<usize> {
    whole(text, Walk::<Measure>::new(max_depth))
}

/// Parses well-formed JSON the fast way: `serde_json`, refusing duplicate keys and nesting
/// beyond `max_depth` (as the tolerant parser does). `None` for anything else, which the
/// caller hands to the tolerant parser for a repair or a precise error.
pub(super) fn parse_strict(text: &str, max_depth: usize) -> Option<Value> {
    whole(text, Walk::<Build>::new(max_depth))
}

/// Runs `seed` over the whole of `text`: `None` unless it accepts and only whitespace follows.
fn whole<'de, S: DeserializeSeed<'de>>(text: &'de str, seed: S) -> Option<S::Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// A scalar as the walk meets it.
enum Leaf<'a> {
    Bool(bool),
    Number(Number),
    Str(&'a str),
    String(String),
    Null,
}

/// Two members of one object share a key.
struct Duplicate;

/// What a [`Walk`] makes of the values it accepts: their depth ([`Measure`]) or their tree
/// ([`Build`]). The walk itself owns the rules (depth budget, finite numbers, duplicate
/// keys), so the two cannot drift apart; each maker is monomorphized into its own walk, so
/// measuring builds and allocates no more than a hand-written depth visitor would.
trait Make<'de> {
    /// What a value becomes.
    type Out;
    /// An array's items so far.
    type Items: Default;
    /// An object's members so far.
    type Members: Default;
    /// A scalar's result.
    fn leaf(leaf: Leaf<'_>) -> Self::Out;
    /// Adds an item to an array.
    fn push(items: &mut Self::Items, item: Self::Out);
    /// The finished array.
    fn array(items: Self::Items) -> Self::Out;
    /// Adds a member to an object; a maker may report a repeated key here or in `object`.
    fn insert(
        members: &mut Self::Members,
        key: Cow<'de, str>,
        value: Self::Out,
    ) -> Result<(), Duplicate>;
    /// The finished object.
    fn object(members: Self::Members) -> Result<Self::Out, Duplicate>;
}

/// Measures depth (scalars 0, `{}` 1) and builds nothing; keys are borrowed from the text
/// where they have no escapes, and compared once the object is read.
struct Measure;

impl<'de> Make<'de> for Measure {
    type Out = usize;
    type Items = usize;
    type Members = (Vec<Cow<'de, str>>, usize);

    fn leaf(_: Leaf<'_>) -> usize {
        0
    }

    fn push(deepest: &mut usize, depth: usize) {
        *deepest = (*deepest).max(depth);
    }

    fn array(deepest: usize) -> usize {
        1 + deepest
    }

    fn insert(
        (keys, deepest): &mut Self::Members,
        key: Cow<'de, str>,
        depth: usize,
    ) -> Result<(), Duplicate> {
        keys.push(key);
        *deepest = (*deepest).max(depth);
        Ok(())
    }

    fn object((keys, deepest): Self::Members) -> Result<usize, Duplicate> {
        match has_duplicate(&keys, |k| k) {
            true => Err(Duplicate),
            false => Ok(1 + deepest),
        }
    }
}

/// Builds a [`Value`] like serde_json's own.
struct Build;

impl<'de> Make<'de> for Build {
    type Out = Value;
    type Items = Vec<Value>;
    type Members = Map<String, Value>;

    fn leaf(leaf: Leaf<'_>) -> Value {
        match leaf {
            Leaf::Bool(v) => Value::Bool(v),
            Leaf::Number(n) => Value::Number(n),
            Leaf::Str(s) => Value::String(s.to_string()),
            Leaf::String(s) => Value::String(s),
            Leaf::Null => Value::Null,
        }
    }

    fn push(items: &mut Vec<Value>, item: Value) {
        items.push(item);
    }

    fn array(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn insert(map: &mut Self::Members, key: Cow<'de, str>, value: Value) -> Result<(), Duplicate> {
        match map.insert(key.into_owned(), value) {
            Some(_) => Err(Duplicate),
            None => Ok(()),
        }
    }

    fn object(map: Self::Members) -> Result<Value, Duplicate> {
        Ok(Value::Object(map))
    }
}

/// Walks one JSON value within a depth budget, making of it what `M` makes.
struct Walk<M> {
    depth_left: usize,
    make: PhantomData<fn() -> M>,
}

impl<M> Clone for Walk<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Walk<M> {}

impl<M> Walk<M> {
    /// A walk of a value nested at most `max_depth` deep (and never beyond [`HARD_MAX_DEPTH`]).
    fn new(max_depth: usize) -> Self {
        Walk {
            depth_left: max_depth.min(HARD_MAX_DEPTH),
            make: PhantomData,
        }
    }

    /// The walk one level deeper, or an error when the depth budget is spent.
    fn enter<E: Error>(self) -> Result<Self, E> {
        Ok(Walk {
            depth_left: enter(self.depth_left)?,
            make: PhantomData,
        })
    }
}

impl<'de, M: Make<'de>> DeserializeSeed<'de> for Walk<M> {
    type Value = M::Out;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<M::Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, M: Make<'de>> Visitor<'de> for Walk<M> {
    type Value = M::Out;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::Number(v.into())))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<M::Out, E> {
        Number::from_f64(v)
            .map(|n| M::leaf(Leaf::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::Str(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::String(v)))
    }

    fn visit_unit<E>(self) -> Result<M::Out, E> {
        Ok(M::leaf(Leaf::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<M::Out, A::Error> {
        let inner = self.enter::<A::Error>()?;
        let mut items = M::Items::default();
        while let Some(item) = seq.next_element_seed(inner)? {
            M::push(&mut items, item);
        }
        Ok(M::array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<M::Out, A::Error> {
        let inner = self.enter::<A::Error>()?;
        let duplicate = |_| A::Error::custom("duplicate key");
        let mut members = M::Members::default();
        while let Some(key) = access.next_key_seed(Key)? {
            let value = access.next_value_seed(inner)?;
            M::insert(&mut members, key, value).map_err(duplicate)?;
        }
        M::object(members).map_err(duplicate)
    }
}

/// Whether two of `items` have the same key.
pub(super) fn has_duplicate<T>(items: &[T], key: impl Fn(&T) -> &str) -> bool {
    // The few keys of a typical object are compared pairwise, without allocating; sorting
    // keeps hostile inputs with many keys at n log n.
    if items.len() <= 8 {
        return (1..items.len()).any(|i| items[..i].iter().any(|b| key(b) == key(&items[i])));
    }
    let mut keys: Vec<&str> = items.iter().map(key).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// One level deeper, or an error when the depth budget is spent.
fn enter<E: Error>(depth_left: usize) -> Result<usize, E> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| E::custom("nested too deep"))
}

/// A token object's top level: each key, with its value when that is a string.
pub(super) type Top<'de> = Vec<(Cow<'de, str>, Option<Cow<'de, str>>)>;

/// Checks a well-formed JSON object as [`parse_strict`] does, keeping only its top level.
pub(super) fn parse_top(text: &str, max_depth: usize) -> Option<Top<'_>> {
    whole(
        text,
        TopLevel {
            depth_left: max_depth.min(HARD_MAX_DEPTH),
        },
    )
}

/// The visitor behind [`parse_top`]: an object, whose values are measured by the walk.
#[derive(Clone, Copy)]
struct TopLevel {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Top<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Top<'de>, A::Error> {
        let inner = Walk::<Measure>::new(self.depth_left).enter::<A::Error>()?;
        let mut top: Top<'de> = Vec::with_capacity(8);
        while let Some(key) = access.next_key_seed(Key)? {
            let value = access.next_value_seed(TopValue(inner))?;
            top.push((key, value));
        }
        if has_duplicate(&top, |(k, _)| k) {
            return Err(Error::custom("duplicate key"));
        }
        Ok(top)
    }
}

/// A top-level value: kept when a string, otherwise only checked.
#[derive(Clone, Copy)]
struct TopValue(Walk<Measure>);

impl<'de> DeserializeSeed<'de> for TopValue {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopValue {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
        self.0.visit_f64(v).map(|_| None)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(access).map(|_| None)
    }
}
