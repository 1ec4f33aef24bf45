//! The syntax tree of a search query. Serialises to JSON (golden files, the `/parse` endpoint).

use serde::Serialize;

/// Byte range `[start, end)` in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A boolean query. `And`/`Or` are flattened (no `And` directly inside `And`) and never empty;
/// the empty query is `Expr::All`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Expr {
    /// Matches every record (the empty query).
    All,
    And {
        args: Vec<Expr>,
    },
    Or {
        args: Vec<Expr>,
    },
    Not {
        arg: Box<Expr>,
    },
    Term(Term),
}

/// One condition on one field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    pub field: Field,
    #[serde(flatten)]
    pub pred: Pred,
    pub span: Span,
}

/// The fields a query can name. Each maps to one path of the log record (`path()`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Free text and `message:`.
    Message,
    Namespace,
    Pod,
    Container,
    Node,
    Cluster,
    Stream,
    Level,
    Workload,
    /// `label.<key>:`.
    Label(String),
    /// `time:`; only comparisons and ranges of RFC 3339 timestamps.
    Time,
}

impl Field {
    /// The dotted path of the field in the log record (and in the Elasticsearch document).
    pub fn path(&self) -> String {
        match self {
            Field::Message => "message".into(),
            Field::Namespace => "kubernetes.namespace".into(),
            Field::Pod => "kubernetes.pod.name".into(),
            Field::Container => "kubernetes.container.name".into(),
            Field::Node => "host.name".into(),
            Field::Cluster => "orchestrator.cluster.name".into(),
            Field::Stream => "stream".into(),
            Field::Level => "log.level".into(),
            Field::Workload => "kubernetes.workload.name".into(),
            Field::Label(key) => format!("kubernetes.labels.{key}"),
            Field::Time => "@timestamp".into(),
        }
    }

    /// The field a qualifier names (ASCII case-insensitive: `namespace`, `Pod`, `label.app`, ...;
    /// a label key is `[A-Za-z0-9._/-]+` and keeps its case); `None` for a word that is not a
    /// qualifier.
    pub fn from_qualifier(q: &str) -> Option<Field> {
        let lower = q.to_ascii_lowercase();
        Some(match lower.as_str() {
            "message" => Field::Message,
            "namespace" => Field::Namespace,
            "pod" => Field::Pod,
            "container" => Field::Container,
            "node" => Field::Node,
            "cluster" => Field::Cluster,
            "stream" => Field::Stream,
            "level" => Field::Level,
            "workload" => Field::Workload,
            "time" => Field::Time,
            _ => {
                let key = q.get(6..).filter(|_| lower.starts_with("label."))?;
                if key.is_empty() || !key.bytes().all(is_label_key_byte) {
                    return None;
                }
                Field::Label(key.to_owned())
            }
        })
    }

    /// The qualifier as written in a query (`namespace`, `label.app`, ...).
    pub fn qualifier(&self) -> String {
        match self {
            Field::Label(key) => format!("label.{key}"),
            Field::Message => "message".into(),
            Field::Namespace => "namespace".into(),
            Field::Pod => "pod".into(),
            Field::Container => "container".into(),
            Field::Node => "node".into(),
            Field::Cluster => "cluster".into(),
            Field::Stream => "stream".into(),
            Field::Level => "level".into(),
            Field::Workload => "workload".into(),
            Field::Time => "time".into(),
        }
    }
}

/// What a term asks of its field.
///
/// On keyword fields (everything but the message) `Word` and `Phrase` are exact matches. On the
/// message, `Word` is one token and `Phrase` a sequence of tokens in order; a bare word that the
/// tokenizer splits in several tokens (`/api/v1`) is lowered as a phrase. `Glob` and `Regex` on the
/// message match anywhere in the line (like grep); on keyword fields they must match the whole
/// value (like a shell glob).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pred {
    Word {
        value: String,
    },
    Phrase {
        value: String,
    },
    /// `*` any run of characters, `?` one character; no other metacharacters.
    Glob {
        pattern: String,
    },
    /// A regular expression in Rust `regex` / Lucene-compatible syntax (the parser rejects what
    /// the two disagree on).
    Regex {
        pattern: String,
        case_insensitive: bool,
    },
    /// Serialised with `"cmp"` for `op`: the `Expr` tag already uses the `"op"` key.
    Compare {
        #[serde(rename = "cmp")]
        op: CmpOp,
        value: String,
    },
    /// `a..b` (both inclusive); `None` is an open end (`*`).
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// `has:<field>`; `no:<field>` is `Not(Exists)`.
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub const fn as_str(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// Levels in order of severity; `level:>=warn` means warn, error, fatal.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

impl Expr {
    /// The same expression with every span set to `0..0`, to compare expressions by meaning
    /// (`parse(print(e))` against `e`).
    pub fn erase_spans(&self) -> Expr {
        match self {
            Expr::All => Expr::All,
            Expr::And { args } => Expr::And {
                args: args.iter().map(Expr::erase_spans).collect(),
            },
            Expr::Or { args } => Expr::Or {
                args: args.iter().map(Expr::erase_spans).collect(),
            },
            Expr::Not { arg } => Expr::Not {
                arg: Box::new(arg.erase_spans()),
            },
            Expr::Term(t) => Expr::Term(Term {
                span: Span { start: 0, end: 0 },
                ..t.clone()
            }),
        }
    }

    /// The number of terms (leaves other than `All`), as counted against `Limits::max_terms`.
    pub fn term_count(&self) -> usize {
        match self {
            Expr::All => 0,
            Expr::And { args } | Expr::Or { args } => args.iter().map(Expr::term_count).sum(),
            Expr::Not { arg } => arg.term_count(),
            Expr::Term(_) => 1,
        }
    }
}

/// The bytes of a label key: Kubernetes' `[prefix/]name` alphabet.
pub(crate) fn is_label_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}
