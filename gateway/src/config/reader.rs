//! A strict walker over a parsed TOML document that remembers every mistake.
//!
//! serde's `deny_unknown_fields` stops at the first problem and reports it in
//! its own words; `check` must list every error with the dotted key at fault,
//! so the config is read through this instead.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use toml::{Table, Value};

use super::units::parse_cidr;

/// One problem with a config file: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// Collects errors and warnings while a file is read.
#[derive(Debug)]
pub struct Report {
    file: PathBuf,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl Report {
    pub fn new(file: &Path) -> Self {
        Report {
            file: file.to_path_buf(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn error(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// A table being read. Keys that are never asked for are reported as unknown
/// by [`Section::finish`], so a typo can never silently disable a policy.
pub struct Section<'a> {
    path: String,
    table: &'a Table,
    seen: BTreeSet<&'a str>,
    /// Every key asked for, present or not: the "did you mean" list.
    asked: BTreeSet<&'a str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

impl<'a> Section<'a> {
    pub fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Section {
            path: path.into(),
            table,
            seen: BTreeSet::new(),
            asked: BTreeSet::new(),
        }
    }

    /// The dotted path of `key` in this section, for error messages.
    pub fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Every key of this section, in file order.
    pub fn keys(&self) -> Vec<&'a str> {
        self.table.keys().map(String::as_str).collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        self.asked.insert(key);
        let (k, v) = self.table.get_key_value(key)?;
        self.seen.insert(k.as_str());
        Some(v)
    }

    fn typed<T>(
        &mut self,
        key: &'a str,
        want: &str,
        r: &mut Report,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.get(key)?;
        let out = f(v);
        if out.is_none() {
            r.error(
                self.key(key),
                format!("expected {want}, found {}", type_name(v)),
            );
        }
        out
    }

    pub fn str(&mut self, key: &'a str, r: &mut Report) -> Option<&'a str> {
        self.typed(key, "a string", r, Value::as_str)
    }

    pub fn bool(&mut self, key: &'a str, r: &mut Report) -> Option<bool> {
        self.typed(key, "true or false", r, Value::as_bool)
    }

    pub fn int(&mut self, key: &'a str, r: &mut Report) -> Option<i64> {
        self.typed(key, "an integer", r, Value::as_integer)
    }

    /// A list of strings; every element is checked.
    pub fn str_list(&mut self, key: &'a str, r: &mut Report) -> Option<Vec<&'a str>> {
        let list = self.typed(key, "a list of strings", r, Value::as_array)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s),
                None => {
                    r.error(
                        format!("{}[{i}]", self.key(key)),
                        format!("expected a string, found {}", type_name(v)),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    pub fn table(&mut self, key: &'a str, r: &mut Report) -> Option<Section<'a>> {
        let path = self.key(key);
        self.typed(key, "a table", r, Value::as_table)
            .map(|t| Section::new(path, t))
    }

    /// A list of tables (`[[route]]`).
    pub fn table_list(&mut self, key: &'a str, r: &mut Report) -> Option<Vec<Section<'a>>> {
        let list = self.typed(key, "a list of tables ([[...]])", r, Value::as_array)?;
        let base = self.key(key);
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            match v.as_table() {
                Some(t) => out.push(Section::new(format!("{base}[{i}]"), t)),
                None => r.error(format!("{base}[{i}]"), "expected a table"),
            }
        }
        Some(out)
    }

    /// Every sub-table of this section, by name (`[upstreams.NAME]`).
    pub fn named_tables(&mut self, r: &mut Report) -> Vec<(&'a str, Section<'a>)> {
        let mut out = Vec::new();
        for (k, v) in self.table.iter() {
            self.seen.insert(k.as_str());
            let path = self.key(k);
            match v.as_table() {
                Some(t) => out.push((k.as_str(), Section::new(path, t))),
                None => r.error(path, format!("expected a table, found {}", type_name(v))),
            }
        }
        out
    }

    /// Reads the sub-table `key` (an empty one when absent) with `read`, then
    /// reports its unknown keys.
    pub fn section<T>(
        &mut self,
        key: &'a str,
        r: &mut Report,
        read: impl FnOnce(&mut Section<'a>, &mut Report) -> T,
    ) -> T {
        static EMPTY: LazyLock<Table> = LazyLock::new(Table::new);
        let path = self.key(key);
        let mut sec = self
            .table(key, r)
            .unwrap_or_else(|| Section::new(path, &EMPTY));
        let out = read(&mut sec, r);
        sec.finish(r);
        out
    }

    /// Reports every key that was never read.
    pub fn finish(self, r: &mut Report) {
        for k in self.table.keys() {
            if !self.seen.contains(k.as_str()) {
                let known: Vec<&str> = self.asked.iter().copied().collect();
                let reason = if known.is_empty() {
                    "unknown key".to_string()
                } else {
                    format!("unknown key (expected one of: {})", known.join(", "))
                };
                r.error(self.key(k), reason);
            }
        }
    }
}

/// A size key (`"10MB"`), its error reported under the key.
pub(super) fn size(sec: &mut Section<'_>, key: &'static str, r: &mut Report) -> Option<u64> {
    let s = sec.str(key, r)?;
    super::units::parse_size(s)
        .map_err(|e| r.error(sec.key(key), e.to_string()))
        .ok()
}

/// A duration key (`"30s"`), its error reported under the key.
pub(super) fn duration(
    sec: &mut Section<'_>,
    key: &'static str,
    r: &mut Report,
) -> Option<Duration> {
    let s = sec.str(key, r)?;
    super::units::parse_duration(s)
        .map_err(|e| r.error(sec.key(key), e.to_string()))
        .ok()
}

/// A list of CIDRs (a bare address is one host); each bad entry is named by
/// its index, with `example` in the message.
pub(super) fn cidr_list(
    sec: &mut Section<'_>,
    key: &'static str,
    example: &str,
    r: &mut Report,
) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, s) in sec
        .str_list(key, r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match parse_cidr(s) {
            Some(net) => out.push(net),
            None => r.error(
                format!("{}[{i}]", sec.key(key)),
                format!("{s:?} is not an IP address or CIDR (e.g. {example})"),
            ),
        }
    }
    out
}
