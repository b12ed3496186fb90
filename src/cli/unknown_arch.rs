//! What `inspect` says about a file no plan binds: each tensor name and architecture key, with the
//! role or hyper-parameter the known plans give it, or `?` where no plan knows it, and the known
//! plan closest to the file, as the starting point of a new plan.

use crate::gguf::GgufFile;
use crate::plan::schema::{HparamSpec, Plan};
use std::collections::{BTreeMap, BTreeSet};

const GUIDE: &str = "docs/adding-an-architecture.md";

/// Names as plans write them: `blk.{i}.` for a layer's tensors, `{arch}.` for the model's keys.
fn tensor_pattern(name: &str) -> String {
    let layer = name
        .strip_prefix("blk.")
        .and_then(|rest| rest.split('.').next())
        .filter(|i| i.parse::<usize>().is_ok());
    match layer {
        Some(i) => name.replacen(&format!("blk.{i}."), "blk.{i}.", 1),
        None => name.to_string(),
    }
}

/// What the known plans call each tensor name and key pattern, and which plans use it.
struct Known {
    roles: BTreeMap<String, (String, BTreeSet<String>)>,
    hparams: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl Known {
    fn from_plans(plans: &[Plan]) -> Known {
        let mut known = Known {
            roles: BTreeMap::new(),
            hparams: BTreeMap::new(),
        };
        for plan in plans {
            for (role, spec) in plan.tensors.iter().chain(&plan.layer_tensors) {
                // Only a role's first candidate is its own name; later ones are fallbacks that
                // belong to other roles (the tied output's token_embd.weight).
                let name = spec.name.candidates()[0].to_string();
                let entry = known
                    .roles
                    .entry(name)
                    .or_insert_with(|| (role.clone(), BTreeSet::new()));
                entry.1.insert(plan.name.clone());
            }
            for (name, spec) in &plan.hparams {
                let key = match spec {
                    HparamSpec::Key(k) => Some(k),
                    HparamSpec::Full(f) => f.key.as_ref(),
                };
                if let Some(key) = key {
                    let entry = known
                        .hparams
                        .entry(key.clone())
                        .or_insert_with(|| (name.clone(), BTreeSet::new()));
                    entry.1.insert(plan.name.clone());
                }
            }
        }
        known
    }
}

/// Prints, for a file that no plan binds, what a new plan has to name, and where to start.
pub fn print_unknown(file: &GgufFile) {
    let arch = file.architecture().unwrap_or("");
    let plans = Plan::embedded();
    let known = Known::from_plans(&plans);

    let mut tensors: Vec<String> = Vec::new();
    for t in &file.tensors {
        let p = tensor_pattern(&t.name);
        if !tensors.contains(&p) {
            tensors.push(p);
        }
    }
    let prefix = format!("{arch}.");
    let keys: Vec<(String, String)> = file
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&prefix)?;
            Some((format!("{{arch}}.{rest}"), v.to_string()))
        })
        .collect();

    println!("tensor names  as plans write them (role: what the known plans call it, ? = none)");
    for t in &tensors {
        let role = known.roles.get(t).map_or("?", |(r, _)| r.as_str());
        println!("  {t:<44} {role}");
    }
    println!("arch keys     {{arch}} = {arch} (hparam: what the known plans call it, ? = none)");
    for (k, v) in &keys {
        let name = known.hparams.get(k).map_or("?", |(n, _)| n.as_str());
        println!("  {k:<44} {name:<12} = {v}");
    }

    let unknown_tensors: Vec<&str> = tensors
        .iter()
        .filter(|t| !known.roles.contains_key(*t))
        .map(String::as_str)
        .collect();
    let unknown_keys: Vec<&str> = keys
        .iter()
        .filter(|(k, _)| !known.hparams.contains_key(k))
        .map(|(k, _)| k.as_str())
        .collect();
    println!(
        "unknown roles {}",
        list_or_none(&unknown_tensors, "every tensor name is known to a plan")
    );
    println!(
        "unknown keys  {}",
        list_or_none(&unknown_keys, "every key is known to a plan")
    );

    let closest = plans
        .iter()
        .map(|plan| {
            let uses = |m: &BTreeMap<String, (String, BTreeSet<String>)>, name: &str| {
                m.get(name).is_some_and(|(_, ps)| ps.contains(&plan.name))
            };
            let t = tensors.iter().filter(|t| uses(&known.roles, t)).count();
            let k = keys.iter().filter(|(k, _)| uses(&known.hparams, k)).count();
            (t + k, t, k, plan)
        })
        .max_by_key(|(score, ..)| *score);
    if let Some((_, t, k, plan)) = closest {
        println!(
            "closest plan  {}: names {t} of {} tensor names and {k} of {} keys",
            plan.name,
            tensors.len(),
            keys.len()
        );
        println!(
            "next          copy plans/{}.toml to plans/{arch}.toml, set architectures = [\"{arch}\"], \
             give the unknown names roles and ops; see {GUIDE}",
            plan.name
        );
    } else {
        println!("next          write plans/{arch}.toml; see {GUIDE}");
    }
}

fn list_or_none(items: &[&str], none: &str) -> String {
    if items.is_empty() {
        format!("none ({none})")
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_tensors_become_patterns() {
        assert_eq!(
            tensor_pattern("blk.12.attn_q.weight"),
            "blk.{i}.attn_q.weight"
        );
        assert_eq!(tensor_pattern("token_embd.weight"), "token_embd.weight");
        assert_eq!(tensor_pattern("blk.x.attn_q.weight"), "blk.x.attn_q.weight");
    }
}
