//! Arithmetic over hyper-parameter names, as plans write shapes and defaults:
//! `n_head * head_dim`, `(n_head + 2 * n_kv_head) * head_dim`, `n_embd / n_head`, `1e-5`.

use std::collections::BTreeMap;

/// Evaluates `text` with identifiers looked up in `vars`. Errors say which name is unknown or
/// where the syntax broke, so that a plan author can fix the expression.
pub fn eval(text: &str, vars: &dyn Fn(&str) -> Option<f64>) -> Result<f64, String> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        vars,
    };
    let v = p.sum()?;
    if p.pos != tokens.len() {
        return Err(format!("unexpected '{}' in '{text}'", tokens[p.pos]));
    }
    Ok(v)
}

/// Evaluates with a plain map of known values.
pub fn eval_map(text: &str, vars: &BTreeMap<String, f64>) -> Result<f64, String> {
    eval(text, &|name| vars.get(name).copied())
}

/// The identifiers an expression refers to, for resolving defaults in dependency order.
pub fn identifiers(text: &str) -> Vec<String> {
    tokenize(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .collect()
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if "+-*/()".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            return Err(format!("unexpected character '{c}' in '{text}'"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [String],
    pos: usize,
    vars: &'a dyn Fn(&str) -> Option<f64>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut v = self.product()?;
        while let Some(op @ ("+" | "-")) = self.peek() {
            let plus = op == "+";
            self.pos += 1;
            let r = self.product()?;
            v = if plus { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut v = self.atom()?;
        while let Some(op @ ("*" | "/")) = self.peek() {
            let times = op == "*";
            self.pos += 1;
            let r = self.atom()?;
            if !times && r == 0.0 {
                return Err("division by zero".into());
            }
            v = if times { v * r } else { v / r };
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<f64, String> {
        let tok = self
            .peek()
            .ok_or_else(|| "expression ends too early".to_string())?
            .to_string();
        self.pos += 1;
        match tok.as_str() {
            "(" => {
                let v = self.sum()?;
                if self.peek() != Some(")") {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(v)
            }
            "-" => Ok(-self.atom()?),
            t if t.starts_with(|c: char| c.is_ascii_digit() || c == '.') => t
                .parse::<f64>()
                .map_err(|_| format!("'{t}' is not a number")),
            t => (self.vars)(t).ok_or_else(|| format!("unknown name '{t}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_shapes_and_defaults() {
        let vars: BTreeMap<String, f64> =
            [("n_head", 14.0), ("n_kv_head", 2.0), ("head_dim", 64.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        assert_eq!(
            eval_map("(n_head + 2 * n_kv_head) * head_dim", &vars),
            Ok(1152.0)
        );
        assert_eq!(eval_map("n_head*head_dim/2", &vars), Ok(448.0));
        assert_eq!(eval_map("1e-5", &vars), Ok(1e-5));
        assert_eq!(eval_map("-3 + 5", &vars), Ok(2.0));
        assert!(eval_map("n_layers", &vars)
            .unwrap_err()
            .contains("n_layers"));
        assert!(eval_map("(1 + 2", &vars).is_err());
        assert!(eval_map("1 / 0", &vars).is_err());
        assert_eq!(identifiers("n_embd / n_head"), vec!["n_embd", "n_head"]);
    }
}
