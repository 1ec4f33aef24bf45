//! A YAML document as a tree of nodes with their positions, and a serde deserializer over it.
//!
//! serde stops at the first error of a deserialization and a streaming YAML deserializer cannot
//! resume after one. Parsing the file once into this tree (with `serde-saphyr`, which gives
//! every node its line and column) lets the loader deserialize each part of the config on its
//! own: one bad source does not hide the problems of another, and every error carries the key
//! path and position of the node it is about.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_saphyr::Spanned;
use std::fmt;

/// 1-based line and column of a node in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    /// A non-string scalar (bool, integer, float) and its text as written in the file.
    Bool(bool, String),
    Int(i64, String),
    UInt(u64, String),
    Float(f64, String),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order, duplicates included (the loader reports them).
    Map(Vec<(Key, Node)>),
}

/// A mapping key: its text and position.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub text: String,
    pub pos: Pos,
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(..) => "a boolean",
            Kind::Int(..) | Kind::UInt(..) => "an integer",
            Kind::Float(..) => "a float",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The entries of a mapping (first occurrence of each key only).
    pub fn entries(&self) -> Option<Vec<(&Key, &Node)>> {
        match &self.kind {
            Kind::Map(entries) => {
                let mut out: Vec<(&Key, &Node)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    if !out.iter().any(|(seen, _)| seen.text == k.text) {
                        out.push((k, v));
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }

    /// The value of `key` in a mapping (first occurrence).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key `key` of a mapping (first occurrence).
    pub fn key(&self, key: &str) -> Option<&Key> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(k, _)| k),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }
}

/// The document as `serde-saphyr` gives it, before conversion to [`Node`].
enum Parsed {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Parsed>>),
    Map(Vec<(Spanned<Parsed>, Spanned<Parsed>)>),
}

impl<'de> de::Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parsed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Parsed, E> {
                Ok(Parsed::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Parsed, E> {
                Ok(Parsed::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Parsed, E> {
                Ok(Parsed::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Parsed, E> {
                Ok(Parsed::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Parsed, E> {
                Ok(Parsed::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Parsed, E> {
                Ok(Parsed::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Parsed, E> {
                Ok(Parsed::Null)
            }
            fn visit_none<E>(self) -> Result<Parsed, E> {
                Ok(Parsed::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
                <Parsed as de::Deserialize>::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Parsed, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Parsed::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Parsed, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_entry()? {
                    v.push(x);
                }
                Ok(Parsed::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML syntax error: the document could not be read at all.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses `text` into a tree. An empty document (or one holding only comments) is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<Parsed>>>(text, options) {
        Ok(Some(doc)) => Ok(convert(doc, text)),
        Ok(None) => Ok(Node {
            pos: Pos { line: 1, column: 1 },
            kind: Kind::Null,
        }),
        Err(err) => {
            let inner = err.without_snippet();
            let message = serde_saphyr::MessageFormatter::format_message(
                &serde_saphyr::DefaultMessageFormatter,
                inner,
            )
            .replace(['\n', '\r'], " ");
            let pos = err
                .location()
                .map(|l| Pos::from_location(&l))
                .unwrap_or(Pos { line: 1, column: 1 });
            Err(SyntaxError { pos, message })
        }
    }
}

fn source_text(text: &str, loc: &serde_saphyr::Location) -> Option<String> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let s = text.get(start..start.checked_add(len)?)?;
    (!s.is_empty()).then(|| s.to_owned())
}

fn convert(s: Spanned<Parsed>, text: &str) -> Node {
    let pos = Pos::from_location(&s.referenced);
    let repr = |fallback: String| source_text(text, &s.referenced).unwrap_or(fallback);
    let kind = match s.value {
        Parsed::Null => Kind::Null,
        Parsed::Bool(b) => Kind::Bool(b, repr(b.to_string())),
        Parsed::Int(i) => Kind::Int(i, repr(i.to_string())),
        Parsed::UInt(u) => Kind::UInt(u, repr(u.to_string())),
        Parsed::Float(f) => Kind::Float(f, repr(f.to_string())),
        Parsed::Str(ref st) => Kind::Str(st.clone()),
        Parsed::Seq(items) => Kind::Seq(items.into_iter().map(|i| convert(i, text)).collect()),
        Parsed::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = convert(k, text);
                    let text_of_key = match key.kind {
                        Kind::Str(s) => s,
                        Kind::Bool(_, r)
                        | Kind::Int(_, r)
                        | Kind::UInt(_, r)
                        | Kind::Float(_, r) => r,
                        Kind::Null => "~".to_owned(),
                        Kind::Seq(_) | Kind::Map(_) => "<complex key>".to_owned(),
                    };
                    (
                        Key {
                            text: text_of_key,
                            pos: key.pos,
                        },
                        convert(v, text),
                    )
                })
                .collect(),
        ),
    };
    Node { pos, kind }
}

/// Joins a key path and a key: `sources` + `app` = `sources.app`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// One step of a key path below the node being deserialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// `base` followed by `segs`: `sources.app` + `include`, `1` = `sources.app.include[1]`.
pub(crate) fn path_string(base: &str, segs: &[Seg]) -> String {
    let mut out = base.to_owned();
    for seg in segs {
        match seg {
            Seg::Key(k) => out = join(&out, k),
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Node {
    /// Removes the entry or element at `segs` (relative to this node). Returns whether
    /// something was removed.
    pub fn remove(&mut self, segs: &[Seg]) -> bool {
        let Some((last, parents)) = segs.split_last() else {
            return false;
        };
        let mut node = self;
        for seg in parents {
            let next = match (seg, &mut node.kind) {
                (Seg::Key(k), Kind::Map(entries)) => entries
                    .iter_mut()
                    .find(|(key, _)| key.text == *k)
                    .map(|(_, v)| v),
                (Seg::Index(i), Kind::Seq(items)) => items.get_mut(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        match (last, &mut node.kind) {
            (Seg::Key(k), Kind::Map(entries)) => {
                let before = entries.len();
                entries.retain(|(key, _)| key.text != *k);
                entries.len() != before
            }
            (Seg::Index(i), Kind::Seq(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }
}

/// What went wrong while deserializing a node into a raw type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeErrorKind {
    /// A key the raw type does not know; `expected` lists the keys it does.
    UnknownKey {
        key: String,
        expected: Vec<String>,
    },
    MissingKey {
        key: String,
    },
    /// Type errors, unknown enum variants, bad values.
    Invalid {
        message: String,
    },
}

/// A deserialization error with the path and position of the node it is about.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub kind: DeErrorKind,
    /// Below the node given to [`from_node`].
    pub path: Option<Vec<Seg>>,
    pub pos: Option<Pos>,
    /// Other unknown keys of the same mapping, found after the first one (serde stops at the
    /// first, but the loader reports all of them).
    pub more_unknown: Vec<(Vec<Seg>, Pos)>,
}

impl DeError {
    fn new(kind: DeErrorKind) -> Self {
        DeError {
            kind,
            path: None,
            pos: None,
            more_unknown: Vec::new(),
        }
    }

    fn at(mut self, path: &[Seg], pos: Pos) -> Self {
        if self.pos.is_none() {
            self.path = Some(path.to_vec());
            self.pos = Some(pos);
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::UnknownKey { key, .. } => write!(f, "unknown key `{key}`"),
            DeErrorKind::MissingKey { key } => write!(f, "missing key `{key}`"),
            DeErrorKind::Invalid { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(DeErrorKind::Invalid {
            message: msg.to_string(),
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(DeErrorKind::UnknownKey {
            key: field.to_owned(),
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(DeErrorKind::MissingKey {
            key: field.to_owned(),
        })
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let exp = friendly(exp);
        DeError::new(DeErrorKind::Invalid {
            message: format!("expected {exp}, found {unexp}"),
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list: Vec<String> = expected.iter().map(|v| format!("`{v}`")).collect();
        DeError::new(DeErrorKind::Invalid {
            message: format!(
                "unknown value `{variant}`, expected one of {}",
                list.join(", ")
            ),
        })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let exp = friendly(exp);
        DeError::new(DeErrorKind::Invalid {
            message: format!("invalid value: {unexp}, expected {exp}"),
        })
    }
}

/// What serde's primitive visitors expect, in words for users.
fn friendly(exp: &dyn de::Expected) -> String {
    let exp = exp.to_string();
    match exp.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "path string" => "a path".to_owned(),
        _ => exp,
    }
}

/// Deserializes `node` into `T`; error paths are relative to `node`.
pub(crate) fn from_node<T: de::DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: Vec::new(),
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: Vec<Seg>,
}

impl NodeDe<'_> {
    fn invalid(&self, exp: &dyn de::Expected) -> DeError {
        self.expected(&friendly(exp))
    }

    fn expected(&self, what: &str) -> DeError {
        DeError::new(DeErrorKind::Invalid {
            message: format!("expected {what}, found {}", self.node.kind_name()),
        })
        .at(&self.path, self.node.pos)
    }

    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(&self.path, self.node.pos))
    }
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b, _) => visitor.visit_bool(*b),
            Kind::Int(i, _) => visitor.visit_i64(*i),
            Kind::UInt(u, _) => visitor.visit_u64(*u),
            Kind::Float(f, _) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                path: &self.path,
                index: 0,
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe::new(entries, &self.path)),
        };
        self.wrap(r)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => visitor.visit_str(s),
            // `cluster: 123` is the string "123", as written.
            Kind::Bool(_, r) | Kind::Int(_, r) | Kind::UInt(_, r) | Kind::Float(_, r) => {
                visitor.visit_str(r)
            }
            _ => return Err(self.invalid(&visitor)),
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => {
                let list: Vec<String> = variants.iter().map(|v| format!("`{v}`")).collect();
                return Err(self.expected(&format!("one of {}", list.join(", "))));
            }
        };
        self.wrap(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Map(_) => self.deserialize_any(visitor),
            _ => Err(self.expected("a mapping")),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(_) => self.deserialize_any(visitor),
            _ => Err(self.expected("a list")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple
        tuple_struct identifier
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    path: &'a [Seg],
    index: usize,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let mut path = self.path.to_vec();
        path.push(Seg::Index(self.index));
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: Vec<(&'a Key, &'a Node)>,
    next: usize,
    path: &'a [Seg],
}

impl<'a> MapDe<'a> {
    fn child(&self, key: &str) -> Vec<Seg> {
        let mut path = self.path.to_vec();
        path.push(Seg::Key(key.to_owned()));
        path
    }

    fn new(all: &'a [(Key, Node)], path: &'a [Seg]) -> Self {
        // Duplicate keys are reported by the loader; the first occurrence is used.
        let mut entries: Vec<(&Key, &Node)> = Vec::with_capacity(all.len());
        for (k, v) in all {
            if !entries.iter().any(|(seen, _)| seen.text == k.text) {
                entries.push((k, v));
            }
        }
        MapDe {
            entries,
            next: 0,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        let path = self.child(&key.text);
        match seed.deserialize(KeyDe { text: &key.text }) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let mut e = e.at(&path, key.pos);
                if let DeErrorKind::UnknownKey { expected, .. } = &e.kind {
                    for (other, _) in &self.entries[self.next + 1..] {
                        if !expected.contains(&other.text) {
                            e.more_unknown.push((self.child(&other.text), other.pos));
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, node)) = self.entries.get(self.next) else {
            return Err(de::Error::custom("value requested before key"));
        };
        self.next += 1;
        seed.deserialize(NodeDe {
            node,
            path: self.child(&key.text),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

struct KeyDe<'a> {
    text: &'a str,
}

impl<'de> Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.text)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_scalars() {
        let n = parse("a: 1\nb: {c: off, d: \"x\"}\ne: [1, yes]\n").unwrap();
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 1, column: 4 });
        let b = n.get("b").unwrap();
        assert_eq!(
            b.key("d").unwrap().pos,
            Pos {
                line: 2,
                column: 13
            }
        );
        assert!(matches!(b.get("c").unwrap().kind, Kind::Bool(false, ref r) if r == "off"));
        let s: String = from_node(b.get("c").unwrap()).unwrap();
        assert_eq!(s, "off");
    }

    #[test]
    fn empty_document_is_null() {
        assert!(parse("").unwrap().is_null());
        assert!(parse("# only a comment\n").unwrap().is_null());
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let n = parse("a: 1\na: 2\n").unwrap();
        assert!(matches!(&n.kind, Kind::Map(e) if e.len() == 2));
    }
}
