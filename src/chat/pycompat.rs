//! The Python string and dict methods that Hugging Face chat templates call (`.strip()`,
//! `.startswith(..)`, `.items()`, ...), which Jinja2 gets from Python and minijinja lacks.
//! Installed as minijinja's unknown-method callback.

use minijinja::value::{from_args, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

pub fn call_method(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(value, method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let out: Value = match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            let strip = |c: char| match chars {
                Some(set) => set.contains(c),
                None => c.is_whitespace(),
            };
            match method {
                "strip" => s.trim_matches(strip),
                "lstrip" => s.trim_start_matches(strip),
                _ => s.trim_end_matches(strip),
            }
            .into()
        }
        "startswith" | "endswith" => {
            let (affix,): (Value,) = from_args(args)?;
            let test = |a: &str| {
                if method == "startswith" {
                    s.starts_with(a)
                } else {
                    s.ends_with(a)
                }
            };
            // Python accepts one string or a tuple of them.
            match affix.as_str() {
                Some(a) => test(a),
                None => affix.try_iter()?.any(|a| a.as_str().is_some_and(test)),
            }
            .into()
        }
        "split" | "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let max = maxsplit.filter(|&m| m >= 0).map(|m| m as usize);
            split(s, sep, max, method == "rsplit")?
        }
        "upper" => s.to_uppercase().into(),
        "lower" => s.to_lowercase().into(),
        "title" => title(s).into(),
        "capitalize" => {
            let mut chars = s.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase)),
                None => return Ok("".into()),
            }
            .collect::<String>()
            .into()
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            match count.filter(|&c| c >= 0) {
                Some(c) => s.replacen(old, new, c as usize),
                None => s.replace(old, new),
            }
            .into()
        }
        "find" => {
            let (sub,): (&str,) = from_args(args)?;
            // Python counts characters, not bytes.
            s.find(sub)
                .map_or(-1, |b| s[..b].chars().count() as i64)
                .into()
        }
        "count" => {
            let (sub,): (&str,) = from_args(args)?;
            if sub.is_empty() {
                (s.chars().count() + 1).into()
            } else {
                s.matches(sub).count().into()
            }
        }
        "join" => {
            let (items,): (Value,) = from_args(args)?;
            let parts: Vec<String> = items.try_iter()?.map(|v| v.to_string()).collect();
            parts.join(s).into()
        }
        "isspace" => (!s.is_empty() && s.chars().all(char::is_whitespace)).into(),
        "isdigit" => (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())).into(),
        "isalpha" => (!s.is_empty() && s.chars().all(char::is_alphabetic)).into(),
        "isalnum" => (!s.is_empty() && s.chars().all(char::is_alphanumeric)).into(),
        "islower" => {
            (s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase)).into()
        }
        "isupper" => {
            (s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase)).into()
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(out)
}

fn split(s: &str, sep: Option<&str>, max: Option<usize>, from_right: bool) -> Result<Value, Error> {
    let parts: Vec<String> = match sep {
        Some("") => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "split: empty separator",
            ))
        }
        Some(sep) => match (max, from_right) {
            (Some(m), false) => s.splitn(m + 1, sep).map(String::from).collect(),
            (Some(m), true) => {
                let mut v: Vec<String> = s.rsplitn(m + 1, sep).map(String::from).collect();
                v.reverse();
                v
            }
            (None, _) => s.split(sep).map(String::from).collect(),
        },
        // No separator: runs of whitespace split, and empty strings are dropped.
        None => {
            let words: Vec<&str> = s.split_whitespace().collect();
            match max {
                Some(m) if m < words.len() => whitespace_splitn(s, m, from_right),
                _ => words.into_iter().map(String::from).collect(),
            }
        }
    };
    Ok(Value::from(parts))
}

/// Python's `str.split(None, m)`: at most m splits; the rest keeps its inner whitespace.
fn whitespace_splitn(s: &str, m: usize, from_right: bool) -> Vec<String> {
    if from_right {
        let mut v: Vec<String> = whitespace_splitn(&s.chars().rev().collect::<String>(), m, false)
            .into_iter()
            .map(|w| w.chars().rev().collect())
            .collect();
        v.reverse();
        return v;
    }
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while out.len() < m {
        match rest.find(char::is_whitespace) {
            Some(end) => {
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Python's `str.title()`: a letter after a non-letter is upper-cased, other letters lowered.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_letter {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_letter = true;
        } else {
            out.push(c);
            prev_letter = false;
        }
    }
    out
}

fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "items" => {
            let _: () = from_args(args)?;
            let items: Result<Vec<Value>, Error> = map
                .try_iter()?
                .map(|k| Ok(Value::from(vec![k.clone(), map.get_item(&k)?])))
                .collect();
            Ok(Value::from(items?))
        }
        "keys" => {
            let _: () = from_args(args)?;
            Ok(Value::from(map.try_iter()?.collect::<Vec<_>>()))
        }
        "values" => {
            let _: () = from_args(args)?;
            let values: Result<Vec<Value>, Error> =
                map.try_iter()?.map(|k| map.get_item(&k)).collect();
            Ok(Value::from(values?))
        }
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            let v = map.get_item(&key)?;
            Ok(if v.is_undefined() {
                default.unwrap_or(Value::from(()))
            } else {
                v
            })
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}
