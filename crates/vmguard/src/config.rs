//! The configuration file: `vmguard.toml`. Every section is optional. With no `--config` (and no
//! `VMGUARD_CONFIG`) a missing `vmguard.toml` in the current directory means defaults; a file named
//! explicitly must exist, so a typo never falls back to the default lab.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The config file read when none is named.
pub const DEFAULT_FILE: &str = "vmguard.toml";

/// Everything `vmguard.toml` may hold. Sections are owned by the library crate that uses them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lab: lab::LabSpec,
    /// Guests for `--discover static`: anything discovery does not find by itself.
    #[serde(rename = "guest")]
    pub guests: Vec<telemetry::StaticGuest>,
}

impl Config {
    /// Read a config file named explicitly (`--config FILE`, `VMGUARD_CONFIG`): it must exist.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "config file {} does not exist (named by --config or VMGUARD_CONFIG; without either, \
                 ./{DEFAULT_FILE} is read if present and defaults apply otherwise)",
                path.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// Read the implicit default file: a missing one gives the defaults.
    pub fn load_or_default(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// `explicit` is the file named on the command line or in the environment, if any.
    pub fn load_for(explicit: Option<&Path>) -> anyhow::Result<Config> {
        match explicit {
            Some(path) => Config::load(path),
            None => Config::load_or_default(Path::new(DEFAULT_FILE)),
        }
    }

    /// Parse and validate `text`, read from `path`. Errors name the file, the line and column, and the
    /// key when there is one.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| Location::of(text, span.start)).unwrap_or_default();
            let key = e.span().and_then(|span| key_at(text, span.start));
            anyhow::anyhow!("{}", describe(path, &at, key.as_deref(), e.message().trim()))
        })?;
        config.lab.validate().map_err(|e| {
            let msg = e.to_string();
            // Validation has no span: find the key it names among those the file sets.
            match key_named_in(text, &msg) {
                Some((key, at)) => anyhow::anyhow!("{}", describe(path, &at, Some(&key), &msg)),
                None => anyhow::anyhow!("config file {}: {msg}", path.display()),
            }
        })?;
        Ok(config)
    }
}

/// A 1-based line and column, with the line's text.
#[derive(Debug, Default)]
struct Location {
    line: usize,
    column: usize,
    text: String,
}

impl Location {
    fn of(text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            text: text[line_start..line_end].trim_end_matches('\r').to_string(),
        }
    }
}

fn describe(path: &Path, at: &Location, key: Option<&str>, message: &str) -> String {
    let mut out = format!("config file {}", path.display());
    if at.line > 0 {
        out.push_str(&format!(", line {}, column {}", at.line, at.column));
    }
    if let Some(key) = key {
        out.push_str(&format!(", key `{key}`"));
    }
    out.push_str(&format!(": {message}"));
    if at.line > 0 {
        let gutter = at.line.to_string().len();
        out.push_str(&format!("\n  {} | {}\n  {:gutter$} | {:>col$}", at.line, at.text, "", "^", col = at.column));
    }
    out
}

/// Every key the document sets, as dotted paths with the span of the key and of its value.
fn keys(text: &str) -> Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)> {
    fn walk(
        table: &toml::de::DeTable<'_>,
        prefix: &str,
        out: &mut Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)>,
    ) {
        for (k, v) in table {
            let path = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
            out.push((path.clone(), k.span(), v.span()));
            match v.get_ref() {
                toml::de::DeValue::Table(t) => walk(t, &path, out),
                toml::de::DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        out.push((item_path.clone(), item.span(), item.span()));
                        if let toml::de::DeValue::Table(t) = item.get_ref() {
                            walk(t, &item_path, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk(doc.get_ref(), "", &mut out);
    }
    out
}

/// The key whose key or value holds `offset` (the innermost); for a document that does not parse,
/// the bare key that starts the offending line, inside the table header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let keys = keys(text);
    if !keys.is_empty() {
        return keys
            .into_iter()
            .filter(|(_, k, v)| k.contains(&offset) || v.contains(&offset) || (k.start == offset && k.is_empty()))
            // Tables span their whole body: the innermost match is the narrowest value span.
            .min_by_key(|(_, k, v)| v.end.max(k.end) - v.start.min(k.start))
            .map(|(path, _, _)| path);
    }
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key: String =
        line.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'')).collect();
    if key.is_empty() || line.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key,
    })
}

/// The longest `lab.*` key set in the file that a validation message names (`qemu.memory_mib = 64 ...`).
fn key_named_in(text: &str, message: &str) -> Option<(String, Location)> {
    let named = |needle: &str| {
        message.match_indices(needle).any(|(i, _)| {
            let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
            !message[..i].ends_with(word) && !message[i + needle.len()..].starts_with(word)
        })
    };
    keys(text)
        .into_iter()
        .filter_map(|(path, k, _)| path.strip_prefix("lab.").filter(|rel| named(rel)).map(|_| (path.clone(), k)))
        .max_by_key(|(path, _)| path.len())
        .map(|(path, k)| (path, Location::of(text, k.start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let p = dir.path().join("vmguard.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The error of loading `text`, with every cause.
    fn error(text: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, text);
        let err = format!("{:#}", Config::load(&p).unwrap_err());
        (err, p.display().to_string())
    }

    #[test]
    fn implicit_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load_or_default(&dir.path().join("vmguard.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("typo.toml");
        let err = format!("{:#}", Config::load_for(Some(&p)).unwrap_err());
        assert!(err.contains("typo.toml") && err.contains("does not exist"), "{err}");
        assert!(Config::load(&p).is_err());
    }

    #[test]
    fn explicit_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "[lab]\nprefix = \"vmgx\"\n");
        assert_eq!(Config::load_for(Some(&p)).unwrap().lab.prefix, "vmgx");
    }

    #[test]
    fn garbage_names_file_line_and_key() {
        let (err, path) = error("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n");
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("line 1, column "), "{err}");
        assert!(err.contains("key `root`"), "{err}");
        assert!(err.contains("root:x:0:0"), "{err}");
        // A syntax error further down, inside a table.
        let (err, _) = error("[lab]\nprefix = \"vmg\"\nnetwork 10.0.0.0/16\n");
        assert!(err.contains("line 3") && err.contains("key `lab.network`"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let (err, path) = error("[lab]\nprefix = \"vmg\"\n\n[lab.qemu]\nmemory = 512\n");
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("line 5, column 1"), "{err}");
        assert!(err.contains("key `lab.qemu.memory`"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_value_type_names_file_line_and_key() {
        let (err, path) = error("[lab]\nsyncookies = true\n[lab.container]\ncpus = 1.0\nmemory_mib = \"lots\"\n");
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("line 5, column 14"), "{err}");
        assert!(err.contains("key `lab.container.memory_mib`"), "{err}");
        // Inline tables and arrays too.
        let (err, _) = error("lab = { victims = [\"vanilla\", \"vm\"] }\n");
        assert!(err.contains("line 1") && err.contains("key `lab.victims[1]`"), "{err}");
    }

    #[test]
    fn bad_rate_names_file_line_and_key() {
        let (err, path) = error("[lab]\nprefix = \"vmg\"\nattacker_rate = \"fast\"\n");
        assert!(err.contains(&path), "{err}");
        assert!(err.contains("line 3, column 17"), "{err}");
        assert!(err.contains("key `lab.attacker_rate`"), "{err}");
        // A rate that parses but that validation refuses.
        let (err, _) = error("[lab]\nattacker_rate = \"1000pps\"\n");
        assert!(err.contains("line 2") && err.contains("key `lab.attacker_rate`"), "{err}");
        assert!(err.contains("packet rate"), "{err}");
        let (err, _) = error("[lab.qemu]\nmemory_mib = 64\n");
        assert!(err.contains("line 2") && err.contains("key `lab.qemu.memory_mib`"), "{err}");
    }
}
