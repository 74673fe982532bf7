//! The first pass over a manifest: its TOML into the entry types, reporting every
//! unknown key and value of the wrong type with its line and place, not only the
//! first. Each entry serde refuses is reported and left out of the document, and the
//! rest deserialized again.

use super::entries::Manifest;
use super::problem::{Problem, ProblemKind};
use serde::Deserialize;

/// What deserializing a manifest found: the manifest with every entry that had a
/// problem left out (`None` if even that does not deserialize), and the problems.
pub(super) struct Structure {
    pub(super) manifest: Option<Manifest>,
    pub(super) problems: Vec<Problem>,
    /// The entries left out, as the TOML path of their table (`root.children[1]`) and
    /// their key: the semantic checks of that place would only say they are missing.
    pub(super) pruned: Vec<(String, String)>,
}

/// Most problems of one kind reported at once.
const MAX_PROBLEMS: usize = 100;

/// Deserializes `text`, reporting every unknown key and every value of the wrong type
/// with its line and place, not only the first: each entry serde refuses is reported
/// and left out, and the rest deserialized again.
pub(super) fn structure(text: &str) -> Structure {
    let line = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let problem = Problem::new(ProblemKind::Syntax, "", e.message());
            let problem = match line(e.span()) {
                Some(n) => problem.at_line(n),
                None => problem,
            };
            return Structure { manifest: None, problems: vec![problem], pruned: Vec::new() };
        }
    };
    let mut problems = Vec::new();
    let mut pruned: Vec<Cut> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let e = match Manifest::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(manifest) => {
                let pruned = pruned.into_iter().map(|cut| (cut.table, cut.key)).collect();
                return Structure { manifest: Some(manifest), problems, pruned };
            }
            Err(e) => e,
        };
        // A field left out for its problem is then missing: said once is enough.
        let missing = e.message().strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'));
        let repeated = |span: &std::ops::Range<usize>| {
            missing.is_some_and(|field| {
                pruned.iter().any(|cut| cut.table_span == *span && cut.key == field)
            })
        };
        let kind = kind_of(e.message());
        let Some(span) = e.span() else {
            problems.push(Problem::new(kind, "", e.message()));
            break;
        };
        let at = line(Some(span.clone())).unwrap_or(1);
        let doc_span = doc.span();
        let Some(cut) = prune(doc.get_mut(), doc_span, &span, String::new()) else {
            if !repeated(&span) {
                problems.push(Problem::new(kind, "", e.message()).at_line(at));
            }
            break;
        };
        if !repeated(&span) {
            let place = if cut.place.is_empty() { "the top level" } else { &cut.place };
            let message = match e.message() {
                // toml's words for any value that is not a name, for a field of names.
                "wanted string or table" => format!("invalid type: {}, expected a name", cut.found),
                other => other.to_owned(),
            };
            problems.push(Problem::new(kind, place, message).at_line(at));
        }
        pruned.push(cut);
    }
    Structure { manifest: None, problems, pruned: Vec::new() }
}

/// An entry left out of the document.
struct Cut {
    /// Where it was, e.g. `root.children[1].limits.memroy`.
    place: String,
    /// The table it was in, and that table's span.
    table: String,
    table_span: std::ops::Range<usize>,
    key: String,
    /// The type of what was left out (`integer`, `table`, ...).
    found: &'static str,
}

/// Removes the entry of `table` (at `place`, spanning `table_span`), at any depth,
/// that `span` points at: a key or a value covering it, or a table or array element
/// whose span is it (a table's span is its header, or the whole of an inline table).
fn prune(
    table: &mut toml::de::DeTable<'_>,
    table_span: std::ops::Range<usize>,
    span: &std::ops::Range<usize>,
    place: String,
) -> Option<Cut> {
    use toml::de::DeValue;
    let covers = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
    let keys: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
    for key in keys {
        let here = if place.is_empty() { key.clone() } else { format!("{place}.{key}") };
        let (key_span, value) = match table.get_key_value(key.as_str()) {
            Some((k, v)) => (k.span(), v.span()),
            None => continue,
        };
        let entry = table.get_mut(key.as_str()).expect("listed above");
        let hit = covers(key_span)
            || value == *span
            || (covers(value.clone())
                && !matches!(entry.get_ref(), DeValue::Table(_) | DeValue::Array(_)));
        if !hit {
            let found = match entry.get_mut() {
                DeValue::Table(inner) => prune(inner, value.clone(), span, here.clone()),
                DeValue::Array(items) => prune_item(items, value.clone(), span, &here, &key),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
            continue;
        }
        let found = table.remove(key.as_str()).map_or("nothing", |v| v.get_ref().type_str());
        return Some(Cut { place: here, table: place, table_span, key, found });
    }
    None
}

/// [`prune`] in an array: an element `span` points at, or an entry inside one.
fn prune_item(
    items: &mut toml::de::DeArray<'_>,
    array_span: std::ops::Range<usize>,
    span: &std::ops::Range<usize>,
    place: &str,
    key: &str,
) -> Option<Cut> {
    use toml::de::DeValue;
    let covers = |s: std::ops::Range<usize>| s.start <= span.start && span.end <= s.end;
    for i in 0..items.len() {
        let at = format!("{place}[{i}]");
        let item_span = items[i].span();
        let nested = matches!(items[i].get_ref(), DeValue::Table(_) | DeValue::Array(_));
        if item_span != *span && (nested || !covers(item_span.clone())) {
            let found = match items.as_mut()[i].get_mut() {
                DeValue::Table(inner) => prune(inner, item_span, span, at),
                DeValue::Array(inner) => prune_item(inner, item_span, span, &at, key),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
            continue;
        }
        let found = items[i].get_ref().type_str();
        // `DeArray` cannot remove: keep the others.
        let mut kept = toml::de::DeArray::new();
        for (j, item) in items.iter().enumerate() {
            if j != i {
                kept.push(item.clone());
            }
        }
        *items = kept;
        let (table, key) = (place.to_owned(), key.to_owned());
        return Some(Cut { place: at, table, table_span: array_span, key, found });
    }
    None
}

/// The place (`supervisor root, child "a"`) of the manifest table at TOML path `table`
/// (`root.children[0]`), as the semantic checks name it.
pub(super) fn place_of(manifest: &Manifest, table: &str) -> String {
    let mut place = String::from("supervisor root");
    let mut path = String::from("root");
    let mut sup = &manifest.root;
    let mut rest = table.strip_prefix("root").unwrap_or(table);
    while let Some(after) = rest.strip_prefix(".children[") {
        let Some((index, tail)) = after.split_once(']') else { break };
        let Some(child) = index.parse::<usize>().ok().and_then(|i| sup.children.get(i)) else {
            break;
        };
        place = format!("supervisor {path}, child {:?}", child.name);
        rest = tail;
        match (&child.supervisor, rest.strip_prefix(".supervisor")) {
            (Some(sub), Some(tail)) => {
                path = format!("{path}/{}", child.name);
                place = format!("supervisor {path}");
                sup = sub;
                rest = tail;
            }
            _ => break,
        }
    }
    place
}

/// The kind of problem serde's message describes.
fn kind_of(message: &str) -> ProblemKind {
    if message.starts_with("unknown field") {
        ProblemKind::UnknownKey
    } else if message.starts_with("missing field") {
        ProblemKind::MissingKey
    } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
        ProblemKind::BadValue
    } else {
        ProblemKind::WrongType
    }
}
