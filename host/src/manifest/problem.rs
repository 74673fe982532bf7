//! A problem of a manifest: what kind, where, on which line, and what is wrong.

use std::fmt;

/// One problem of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// Where: a TOML path (`root.children[0].limits.memroy`) for a problem of the
    /// file's structure, a node of the tree (`supervisor root, child "a"`) for the
    /// rest; empty for the file as a whole.
    pub place: String,
    /// The line, for a problem found in the TOML text.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The kinds of manifest problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file cannot be read, or is not TOML.
    Syntax,
    /// A key the format does not have.
    UnknownKey,
    /// A value of the wrong type, or not one of the names allowed.
    WrongType,
    /// A key that must be there is not.
    MissingKey,
    /// A value of the right type that cannot be used: a duration, a size, a range.
    BadValue,
    /// A supervision rule is broken (OTP's checks, and Warden's: duplicate ids,
    /// significant children, ...).
    Rule,
    /// A file the manifest names is not there.
    MissingFile,
}

impl Problem {
    pub(crate) fn new(
        kind: ProblemKind,
        place: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self { kind, place: place.into(), line: None, message: message.into() }
    }

    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.place.is_empty()) {
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (Some(line), false) => write!(f, "line {line}, {}: {}", self.place, self.message),
            (None, true) => f.write_str(&self.message),
            (None, false) => write!(f, "{}: {}", self.place, self.message),
        }
    }
}
