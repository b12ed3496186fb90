//! Architecture plans: TOML data that says how a GGUF file's tensors and keys make a model.

pub mod bind;
pub mod expr;
pub mod ops;
pub mod schema;

pub use bind::{bind, BindError, Hparams, Model};
pub use schema::{Plan, QkvLayout, RopeStyle};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan {path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("plan {path}: {message}")]
    Parse { path: String, message: String },
    #[error(
        "no plan for architecture '{arch}' (known plans: {known}). Add one: write plans/<name>.toml \
         (see docs/adding-an-architecture.md) and pass it with --arch plans/<name>.toml"
    )]
    NoPlan { arch: String, known: String },
    #[error("unknown plan '{name}' (known plans: {known}; or give a path to a .toml file)")]
    UnknownName { name: String, known: String },
}

impl Plan {
    pub fn from_toml(text: &str, origin: &str) -> Result<Plan, PlanError> {
        toml::from_str(text).map_err(|e| PlanError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Plan::from_toml(&text, &path.display().to_string())
    }

    /// The plans compiled into the binary.
    pub fn embedded() -> Vec<Plan> {
        schema::EMBEDDED
            .iter()
            .map(|(name, text)| {
                Plan::from_toml(text, &format!("embedded:{name}"))
                    .expect("embedded plans parse (tested)")
            })
            .collect()
    }

    /// `--arch` as given: a path to a .toml file, or the name of an embedded plan.
    pub fn from_arg(arg: &str) -> Result<Plan, PlanError> {
        let path = Path::new(arg);
        if arg.ends_with(".toml") || path.exists() {
            return Plan::load(path);
        }
        Plan::embedded()
            .into_iter()
            .find(|p| p.name == arg)
            .ok_or_else(|| PlanError::UnknownName {
                name: arg.to_string(),
                known: known_names(),
            })
    }

    /// `--arch` if given (a name or a path), else the embedded plan for the file's
    /// `general.architecture`.
    pub fn resolve(arch: Option<&str>, file: &crate::gguf::GgufFile) -> Result<Plan, PlanError> {
        match arch {
            Some(a) => Plan::from_arg(a),
            None => Plan::for_architecture(file.architecture().unwrap_or("(none)")),
        }
    }

    /// The embedded plan that binds `general.architecture`.
    pub fn for_architecture(arch: &str) -> Result<Plan, PlanError> {
        Plan::embedded()
            .into_iter()
            .find(|p| p.architectures.iter().any(|a| a == arch))
            .ok_or_else(|| PlanError::NoPlan {
                arch: arch.to_string(),
                known: known_names(),
            })
    }
}

fn known_names() -> String {
    schema::EMBEDDED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_plans_parse_and_are_found_by_architecture() {
        assert_eq!(Plan::embedded().len(), schema::EMBEDDED.len());
        assert_eq!(
            Plan::for_architecture("qwen2").unwrap().rope.style,
            RopeStyle::Neox
        );
        let err = Plan::for_architecture("mamba").unwrap_err().to_string();
        assert!(
            err.contains("mamba")
                && err.contains("llama")
                && err.contains("adding-an-architecture")
        );
        assert!(Plan::from_arg("nope").is_err());
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_origin() {
        let err = Plan::from_toml("name = 'x'\nbogus = 1", "test.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml"), "{err}");
    }
}
