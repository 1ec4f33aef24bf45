//! Log level normalisation and cheap detection in message bodies.

use memchr::{memchr, memmem};
use nevermore_schemas::record::Level;
use serde::Deserialize;
use serde_json::Value;

/// Maps a level name (case-insensitive) to a [`Level`]; also klog's single letters `I W E F D`.
pub fn normalize(s: &str) -> Option<Level> {
    let s = s.trim();
    // no level name is longer than "information"; avoids work on long values
    if s.is_empty() || s.len() > 11 {
        return None;
    }
    let mut buf = [0u8; 11];
    let lower = &mut buf[..s.len()];
    lower.copy_from_slice(s.as_bytes());
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" | b"trc" | b"t" => Level::Trace,
        b"debug" | b"dbg" | b"d" => Level::Debug,
        b"info" | b"inf" | b"information" | b"notice" | b"i" => Level::Info,
        b"warn" | b"warning" | b"wrn" | b"w" => Level::Warn,
        b"error" | b"err" | b"e" => Level::Error,
        b"fatal" | b"crit" | b"critical" | b"panic" | b"emerg" | b"emergency" | b"alert"
        | b"ftl" | b"f" => Level::Fatal,
        _ => return None,
    })
}

/// How far into a plain message leading level tokens are looked for.
const HEAD: usize = 64;

/// Detects the level of a plain-text message: a klog prefix (`E1126 10:00:00.000000 ...`), a
/// logfmt `level=`/`lvl=` pair, or a level token near the start (`[ERROR]`, `WARN:`, `INFO `).
pub fn detect_plain(msg: &[u8]) -> Option<Level> {
    klog(msg)
        .or_else(|| logfmt(msg))
        .or_else(|| head_token(msg))
}

fn klog(m: &[u8]) -> Option<Level> {
    if m.len() >= 7
        && matches!(m[0], b'I' | b'W' | b'E' | b'F' | b'D')
        && m[1..5].iter().all(u8::is_ascii_digit)
        && m[5] == b' '
        && m[6].is_ascii_digit()
    {
        return normalize(char::from(m[0]).encode_utf8(&mut [0; 4]));
    }
    None
}

fn logfmt(m: &[u8]) -> Option<Level> {
    let mut from = 0;
    // one pass over '=' signs, checking the key before each
    while let Some(rel) = memchr(b'=', &m[from..]) {
        let eq = from + rel;
        from = eq + 1;
        let key_start = m[..eq]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.'))
            .map_or(0, |p| p + 1);
        let key = &m[key_start..eq];
        if !(key.eq_ignore_ascii_case(b"level")
            || key.eq_ignore_ascii_case(b"lvl")
            || key.eq_ignore_ascii_case(b"severity")
            || key.eq_ignore_ascii_case(b"log.level"))
        {
            continue;
        }
        let mut v = &m[from..];
        if let Some(rest) = v.strip_prefix(b"\"") {
            v = &rest[..memchr(b'"', rest).unwrap_or(rest.len())];
        } else {
            let end = v
                .iter()
                .position(|c| c.is_ascii_whitespace() || *c == b',' || *c == b';')
                .unwrap_or(v.len());
            v = &v[..end];
        }
        if let Some(l) = std::str::from_utf8(v).ok().and_then(normalize) {
            return Some(l);
        }
    }
    None
}

fn head_token(m: &[u8]) -> Option<Level> {
    let head = &m[..m.len().min(HEAD)];
    let mut i = 0;
    let mut first = true;
    while i < head.len() {
        let c = head[i];
        if !c.is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        while i < head.len() && head[i].is_ascii_alphabetic() {
            i += 1;
        }
        // a word cut by the end of the head is not a token
        if i == head.len() && head.len() < m.len() {
            return None;
        }
        let word = &head[start..i];
        if word.len() >= 3 && word.len() <= 11 {
            let before = start.checked_sub(1).map(|p| head[p]);
            let after = head.get(i).copied();
            let boundary_before = before.is_none_or(|b| !b.is_ascii_alphanumeric() && b != b'_');
            let boundary_after = after.is_none_or(|a| !a.is_ascii_alphanumeric() && a != b'_');
            let bracketed = matches!(before, Some(b'[' | b'<' | b'('))
                && matches!(after, Some(b']' | b'>' | b')'));
            let upper = word.iter().all(u8::is_ascii_uppercase);
            let colon = after == Some(b':');
            // any case when framed like a level ("[warn]", "error: ...") at the start; elsewhere
            // only upper case words, which prose rarely has
            if boundary_before
                && boundary_after
                && (upper || bracketed || (first && colon))
                && let Some(l) = std::str::from_utf8(word).ok().and_then(normalize)
            {
                return Some(l);
            }
        }
        first = false;
    }
    None
}

#[derive(Deserialize)]
struct Probe {
    #[serde(alias = "Level")]
    level: Option<Value>,
    lvl: Option<Value>,
    #[serde(alias = "Severity")]
    severity: Option<Value>,
    #[serde(rename = "log.level")]
    log_level: Option<Value>,
    log: Option<Value>,
}

fn from_value(v: &Value) -> Option<Level> {
    match v {
        Value::String(s) => normalize(s),
        // bunyan / pino numeric levels
        Value::Number(n) => {
            let n = n.as_f64()?;
            Some(if n <= 10.0 {
                Level::Trace
            } else if n <= 20.0 {
                Level::Debug
            } else if n <= 30.0 {
                Level::Info
            } else if n <= 40.0 {
                Level::Warn
            } else if n <= 50.0 {
                Level::Error
            } else {
                Level::Fatal
            })
        }
        _ => None,
    }
}

/// Detects the level of a JSON object body: `level`, `lvl`, `severity`, `log.level` or
/// `{"log":{"level":..}}`. Non-objects and bodies without such a key are rejected before any
/// JSON parsing.
pub fn detect_json(msg: &[u8]) -> Option<Level> {
    let t = msg.trim_ascii();
    if t.first() != Some(&b'{') || t.last() != Some(&b'}') {
        return None;
    }
    if memmem::find(t, b"vel\"").is_none()
        && memmem::find(t, b"vl\"").is_none()
        && memmem::find(t, b"rity\"").is_none()
    {
        return None;
    }
    let p: Probe = serde_json::from_slice(t).ok()?;
    [&p.level, &p.lvl, &p.severity, &p.log_level]
        .into_iter()
        .flatten()
        .find_map(from_value)
        .or_else(|| p.log.as_ref()?.get("level").and_then(from_value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("WARNING"), Some(Level::Warn));
        assert_eq!(normalize("Information"), Some(Level::Info));
        assert_eq!(normalize("notice"), Some(Level::Info));
        assert_eq!(normalize("dbg"), Some(Level::Debug));
        assert_eq!(normalize("ERR"), Some(Level::Error));
        assert_eq!(normalize("emerg"), Some(Level::Fatal));
        assert_eq!(normalize("critical"), Some(Level::Fatal));
        assert_eq!(normalize("panic"), Some(Level::Fatal));
        assert_eq!(normalize("alert"), Some(Level::Fatal));
        assert_eq!(normalize("trace"), Some(Level::Trace));
        assert_eq!(normalize("E"), Some(Level::Error));
        assert_eq!(normalize("w"), Some(Level::Warn));
        assert_eq!(normalize("verbose"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("informationally"), None);
        assert_eq!(normalize("é"), None);
    }

    #[test]
    fn plain_klog() {
        assert_eq!(
            detect_plain(b"E1126 10:00:00.000000       1 reflector.go:138] failed"),
            Some(Level::Error)
        );
        assert_eq!(
            detect_plain(b"I1126 10:00:00.000000 1 x.go:1] ok"),
            Some(Level::Info)
        );
        assert_eq!(
            detect_plain(b"W0101 00:00:00.000000 1 x.go:1] hm"),
            Some(Level::Warn)
        );
    }

    #[test]
    fn plain_logfmt() {
        assert_eq!(
            detect_plain(b"ts=2026-11-26T10:00:00Z level=warn msg=\"disk low\""),
            Some(Level::Warn)
        );
        assert_eq!(detect_plain(b"t=1 lvl=eror msg=x lvl=dbug"), None);
        assert_eq!(detect_plain(b"a=b level=\"error\" c=d"), Some(Level::Error));
        assert_eq!(detect_plain(b"msg=x lvl=info"), Some(Level::Info));
        assert_eq!(detect_plain(b"loglevel=info"), None);
        assert_eq!(detect_plain(b"level="), None);
        let mut long = vec![b'x'; 10_000];
        long.extend_from_slice(b" level=error");
        assert_eq!(detect_plain(&long), Some(Level::Error));
    }

    #[test]
    fn plain_tokens() {
        assert_eq!(detect_plain(b"[ERROR] boom"), Some(Level::Error));
        assert_eq!(detect_plain(b"ERROR boom"), Some(Level::Error));
        assert_eq!(detect_plain(b"WARN: careful"), Some(Level::Warn));
        assert_eq!(detect_plain(b"warn: careful"), Some(Level::Warn));
        assert_eq!(detect_plain(b"[info] hello"), Some(Level::Info));
        assert_eq!(
            detect_plain(b"2026-11-26 10:00:00,123 INFO  [main] c.e.App - started"),
            Some(Level::Info)
        );
        assert_eq!(detect_plain(b"GET /health 200"), None);
        assert_eq!(detect_plain(b"an error occurred"), None);
        assert_eq!(detect_plain(b"Information about things"), None);
        assert_eq!(detect_plain(b""), None);
        assert_eq!(detect_plain(b"ERRORS"), None);
    }

    #[test]
    fn json_bodies() {
        assert_eq!(
            detect_json(br#"{"level":"warn","msg":"x"}"#),
            Some(Level::Warn)
        );
        assert_eq!(detect_json(br#"  {"lvl":"dbg"}  "#), Some(Level::Debug));
        assert_eq!(detect_json(br#"{"severity":"ERROR"}"#), Some(Level::Error));
        assert_eq!(detect_json(br#"{"log.level":"info"}"#), Some(Level::Info));
        assert_eq!(
            detect_json(br#"{"log":{"level":"fatal"}}"#),
            Some(Level::Fatal)
        );
        assert_eq!(
            detect_json(br#"{"level":50,"msg":"pino"}"#),
            Some(Level::Error)
        );
        assert_eq!(detect_json(br#"{"msg":"no level"}"#), None);
        assert_eq!(detect_json(br#"{"level":"warn""#), None);
        assert_eq!(detect_json(b"level=warn"), None);
        assert_eq!(detect_json(br#"{"log":"level\"}"#), None);
        assert_eq!(detect_json(br#"{"level":{"x":1}}"#), None);
    }

    proptest! {
        #[test]
        fn never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = detect_plain(&b);
            let _ = detect_json(&b);
            let _ = normalize(&String::from_utf8_lossy(&b));
        }
    }
}
