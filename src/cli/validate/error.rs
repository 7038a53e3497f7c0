//! Field errors as the API server words them: a field path (`spec.secrets[0].environments[1]`,
//! map keys in brackets) and what is wrong with the value there.

use std::fmt;

/// A field path, printed like the API server's (`spec.environments[0].labels[team]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() { Self(name.to_owned()) } else { Self(format!("{}.{name}", self.0)) }
    }

    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The API server's error types (`field.ErrorType`), plus `Unsupported`: a part of the schema
/// or a CEL rule this offline check cannot evaluate. That is an error too, never a pass. And
/// `Operator`: what the API server accepts but the operator will refuse (a value not in the
/// sealed format, namespaces that cannot be planned); its label says so, so that nobody looks
/// for the rule in the CRD or expects `kubectl apply` to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Required,
    TypeInvalid,
    NotSupported,
    TooLong,
    TooMany,
    Invalid,
    Forbidden,
    Duplicate,
    Unknown,
    Unsupported,
    Operator,
}

impl ErrorKind {
    /// Errors after which the API server does not evaluate the CEL rules (they could not rely
    /// on the object's shape).
    pub fn blocks_rules(self) -> bool {
        matches!(self, Self::NotSupported | Self::Required | Self::TooLong | Self::TooMany | Self::TypeInvalid)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::TypeInvalid => "Invalid type",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Invalid => "Invalid value",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
            Self::Unknown => "unknown field (not in the CRD schema)",
            Self::Unsupported => "cannot be checked offline (check with --server-dry-run)",
            Self::Operator => "Invalid value (the operator's own check; the API server accepts it)",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub path: Path,
    pub kind: ErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn new(path: &Path, kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { path: path.clone(), kind, detail: detail.into() }
    }

    pub fn unsupported(path: &Path, what: &str) -> Self {
        Self::new(path, ErrorKind::Unsupported, what)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(self.kind.label())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}
