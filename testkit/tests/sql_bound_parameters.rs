//! SQL is built only with bound parameters: scans every workspace crate's `src/` for dynamic SQL
//! (`sqlx::AssertSqlSafe(..)`, `sqlx::raw_sql(..)` with a computed argument, and `format!` of a
//! string that reads like SQL) and fails on any that interpolates something other than a
//! SCREAMING_CASE constant, unless the exact spot is on the allow-list below with its reason.

use std::path::{Path, PathBuf};

/// (file, snippet of the format string, why interpolating here is safe).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "testkit/src/lib.rs",
        "CREATE DATABASE {name}",
        // An identifier: Postgres cannot bind database names. `name` is `followup_test_` plus the
        // hex of a UUID generated on the line above, never input.
        "identifier built from a fresh UUID",
    ),
    (
        "projector/src/write.rs",
        "WITH new_leads AS ({new_leads}{returning})",
        // The two statements are built once at start-up from placeholders and constant SQL
        // only: `Params` numbers `$n::type[]` from the constant column-type lists; `returning`
        // and `upkeep` are the `LEAD_ROW` and `COLLABORATIONS` constants or empty, chosen by the
        // `Collaborations` enum; every value is bound.
        "placeholders numbered from constant type lists",
    ),
    (
        "projector/src/write.rs",
        "FROM UNNEST({arrays})",
        // As above: `arrays` is a list of numbered placeholders, never a value.
        "placeholders numbered from constant type lists",
    ),
];

const SQL_WORDS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "GRANT",
    "WHERE", "VALUES", "LISTEN", "NOTIFY", "COPY",
];

#[derive(Debug, PartialEq)]
struct Finding {
    file: String,
    line: usize,
    text: String,
    why: String,
}

fn is_constant(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn looks_like_sql(literal: &str) -> bool {
    literal
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| SQL_WORDS.contains(&word))
}

/// The text between the parenthesis at `open` and its match (string literals respected).
fn argument(src: &str, open: usize) -> &str {
    let bytes = src.as_bytes();
    let (mut depth, mut i, mut in_str) = (0usize, open, false);
    while i < bytes.len() {
        match (bytes[i], in_str) {
            (b'\\', true) => i += 1,
            (b'"', _) => in_str = !in_str,
            (b'(', false) => depth += 1,
            (b')', false) => {
                depth -= 1;
                if depth == 0 {
                    return &src[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    &src[open + 1..]
}

/// The first string literal of a macro's arguments and what follows its closing quote, if
/// the arguments start with a literal.
fn first_literal(args: &str) -> Option<(&str, &str)> {
    let args = args.trim_start();
    let args = args
        .strip_prefix('r')
        .map_or(args, |a| a.trim_start_matches('#'));
    let rest = args.strip_prefix('"')?;
    let bytes = rest.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end] != b'"' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    let end = end.min(rest.len());
    Some((&rest[..end], rest.get(end + 1..).unwrap_or("")))
}

/// Names interpolated by a format string; positional `{}` / `{0}` count as dynamic.
fn placeholders(literal: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = literal.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
            }
            '{' => {
                let end = literal[i..].find('}').map_or(literal.len(), |e| i + e);
                let inner = &literal[i + 1..end];
                out.push(inner.split(':').next().unwrap_or("").trim().to_owned());
            }
            _ => {}
        }
    }
    out
}

/// Why `args` (of `format!` or of `AssertSqlSafe`) is dynamic SQL, or `None` when it is not.
fn dynamic_sql(macro_args: &str, must_be_sql: bool) -> Option<String> {
    let Some((literal, after)) = first_literal(macro_args) else {
        let arg = macro_args.trim();
        return (must_be_sql && !is_constant(arg)).then(|| format!("computed SQL `{arg}`"));
    };
    if !must_be_sql && !looks_like_sql(literal) {
        return None;
    }
    let dynamic: Vec<String> = placeholders(literal)
        .into_iter()
        .filter(|name| !is_constant(name))
        .collect();
    // Arguments after the literal (`format!("{}", x)`) are values too.
    let extra_args = after
        .trim_start_matches('#')
        .trim_start()
        .strip_prefix(',')
        .is_some_and(|rest| !rest.trim().is_empty());
    (!dynamic.is_empty() || extra_args)
        .then(|| format!("interpolates {dynamic:?} into SQL: \"{literal}\""))
}

fn scan(file: &str, src: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let patterns: [(&str, bool); 3] = [
        ("AssertSqlSafe(", true),
        ("raw_sql(", true),
        ("format!(", false),
    ];
    for (pattern, must_be_sql) in patterns {
        for (at, _) in src.match_indices(pattern) {
            // `AssertSqlSafe(format!(..))` is judged once, as the format! it wraps.
            if pattern == "format!(" && src[..at].trim_end().ends_with("AssertSqlSafe(") {
                continue;
            }
            let open = at + pattern.len() - 1;
            let args = argument(src, open);
            let inner = args.trim().strip_prefix("format!").map(|a| {
                let a = a.trim_start();
                &a[1..a.len().saturating_sub(1)]
            });
            let why = match inner {
                Some(inner) => dynamic_sql(inner, true),
                None => dynamic_sql(args, must_be_sql),
            };
            if let Some(why) = why {
                findings.push(Finding {
                    file: file.to_owned(),
                    line: src[..at].lines().count().max(1),
                    text: args.trim().to_owned(),
                    why,
                });
            }
        }
    }
    findings
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn workspace_sql_uses_only_bound_parameters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root).unwrap().flatten() {
        let src = krate.path().join("src");
        if krate.path().join("Cargo.toml").exists() && src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(
        files.len() > 20,
        "found the workspace's sources: {}",
        files.len()
    );
    let mut findings = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        findings.extend(scan(&rel, &std::fs::read_to_string(path).unwrap()));
    }
    let mut used = vec![false; ALLOWED.len()];
    let unexplained: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            let allowed = ALLOWED
                .iter()
                .position(|(file, snippet, _)| f.file == *file && f.text.contains(snippet));
            if let Some(i) = allowed {
                used[i] = true;
            }
            allowed.is_none()
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "dynamic SQL with interpolated values (bind them with $n instead, or allow-list a \
         constant identifier with its reason): {unexplained:#?}"
    );
    for (i, (file, snippet, _)) in ALLOWED.iter().enumerate() {
        assert!(used[i], "stale allow-list entry {file}: {snippet}");
    }
}

#[test]
fn the_scanner_catches_interpolated_values() {
    let bad = [
        r#"sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM leads WHERE owner = '{owner}'")))"#,
        r#"let sql = format!("UPDATE leads SET status = '{}' WHERE id = 1", status);"#,
        r#"sqlx::query(sqlx::AssertSqlSafe(sql))"#,
        r#"sqlx::raw_sql(&statement)"#,
    ];
    for src in bad {
        assert_eq!(scan("x.rs", src).len(), 1, "{src}");
    }
    let good = [
        r#"sqlx::query("SELECT * FROM leads WHERE owner = $1").bind(owner)"#,
        r#"sqlx::AssertSqlSafe(format!("{SELECT_ALL} WHERE id = $1 FOR UPDATE"))"#,
        r#"sqlx::raw_sql(SWAP_SQL)"#,
        r#"sqlx::raw_sql("DROP SCHEMA old CASCADE",)"#,
        r#"format!("lead {id} was updated")"#,
        r#"format!("SMTP_FROM {:?} is not a mailbox: {e}", from)"#,
    ];
    for src in good {
        assert_eq!(scan("x.rs", src), Vec::new(), "{src}");
    }
}
