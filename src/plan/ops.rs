//! Parsing the op lines of a plan's graph: `out1, out2 = op(arg, arg, ...)`.
//! Arguments are split at top-level commas so that expressions like `(a + b) * c` stay whole.

#[derive(Debug, Clone, PartialEq)]
pub struct OpLine {
    pub outputs: Vec<String>,
    pub op: String,
    pub args: Vec<String>,
}

pub fn parse_line(line: &str) -> Result<OpLine, String> {
    let (lhs, rhs) = line
        .split_once('=')
        .ok_or_else(|| format!("'{line}': expected 'outputs = op(args)'"))?;
    let outputs: Vec<String> = lhs.split(',').map(|s| s.trim().to_string()).collect();
    if outputs.iter().any(|o| !is_ident(o)) {
        return Err(format!(
            "'{line}': outputs must be names separated by commas"
        ));
    }
    let rhs = rhs.trim();
    let open = rhs
        .find('(')
        .ok_or_else(|| format!("'{line}': expected op(args) after '='"))?;
    if !rhs.ends_with(')') {
        return Err(format!("'{line}': missing closing ')'"));
    }
    let op = rhs[..open].trim().to_string();
    if !is_ident(&op) {
        return Err(format!("'{line}': '{op}' is not an op name"));
    }
    let inner = &rhs[open + 1..rhs.len() - 1];
    let mut args = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                args.push(inner[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("'{line}': unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("'{line}': unbalanced parentheses"));
    }
    let last = inner[start..].trim();
    if !last.is_empty() || !args.is_empty() {
        args.push(last.to_string());
    }
    if args.iter().any(String::is_empty) {
        return Err(format!("'{line}': empty argument"));
    }
    Ok(OpLine { outputs, op, args })
}

pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_outputs_op_and_args() {
        let l = parse_line("g, u = split(gu, n_ff, (a + b) * 2)").unwrap();
        assert_eq!(l.outputs, vec!["g", "u"]);
        assert_eq!(l.op, "split");
        assert_eq!(l.args, vec!["gu", "n_ff", "(a + b) * 2"]);
        assert_eq!(
            parse_line("x = embed(token_embd)").unwrap().args,
            vec!["token_embd"]
        );
        assert!(parse_line("x embed(t)").is_err());
        assert!(parse_line("x = embed(t").is_err());
        assert!(parse_line("x = embed(t,)").is_err());
        assert!(parse_line("1x = embed(t)").is_err());
    }
}
