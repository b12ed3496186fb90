//! Turning a plan's op lines into a [`Program`]: names become value ids, widths are inferred and
//! checked, and the `qkv` op becomes one fused or three separate projections.

use super::{Op, Program, Step, ValueId, ValueInfo};
use crate::plan::expr;
use crate::plan::ops::{parse_line, OpLine};
use crate::plan::schema::{Plan, TensorSpec};
use std::collections::{BTreeMap, HashMap};

/// `fused_qkv`: whether the qkv op uses the single `attn_qkv` role. `present(role)`: whether an
/// optional role's tensor is in the file (only asked for roles marked optional).
pub fn build_program(
    plan: &Plan,
    hparams: &BTreeMap<String, f64>,
    fused_qkv: bool,
    present: &dyn Fn(&str) -> bool,
) -> Result<Program, String> {
    let mut b = Builder {
        plan,
        hparams,
        present,
        values: Vec::new(),
        ids: HashMap::new(),
        fused_qkv,
    };
    let prologue = b.section(&plan.graph.prologue, "prologue", false)?;
    let block = b.section(&plan.graph.block, "block", true)?;
    let epilogue = b.section(&plan.graph.epilogue, "epilogue", false)?;
    let logits = *b
        .ids
        .get("logits")
        .ok_or("the graph never produces a value named 'logits'")?;
    Ok(Program {
        values: b.values,
        prologue,
        block,
        epilogue,
        logits,
    })
}

struct Builder<'a> {
    plan: &'a Plan,
    hparams: &'a BTreeMap<String, f64>,
    present: &'a dyn Fn(&str) -> bool,
    values: Vec<ValueInfo>,
    ids: HashMap<String, ValueId>,
    fused_qkv: bool,
}

impl Builder<'_> {
    fn section(
        &mut self,
        lines: &[String],
        section: &str,
        in_block: bool,
    ) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        for line in lines {
            let parsed = parse_line(line).map_err(|e| format!("graph.{section}: {e}"))?;
            self.op(&parsed, line, in_block, &mut steps)
                .map_err(|e| format!("graph.{section}: '{line}': {e}"))?;
        }
        Ok(steps)
    }

    fn role_spec(&self, role: &str, in_block: bool) -> Option<&TensorSpec> {
        let layer = in_block
            .then(|| self.plan.layer_tensors.get(role))
            .flatten();
        layer.or_else(|| self.plan.tensors.get(role))
    }

    /// A weight argument: Some(role) if it will be bound, None for an absent optional one.
    fn weight(&self, role: &str, in_block: bool) -> Result<Option<String>, String> {
        let spec = self.role_spec(role, in_block).ok_or_else(|| {
            format!("'{role}' is neither a value computed before nor a tensor role of the plan")
        })?;
        if spec.optional && !(self.present)(role) {
            return Ok(None);
        }
        Ok(Some(role.to_string()))
    }

    /// A bias role that the plan may or may not declare.
    fn maybe_weight(&self, role: &str, in_block: bool) -> Result<Option<String>, String> {
        match self.role_spec(role, in_block) {
            None => Ok(None),
            Some(_) => self.weight(role, in_block),
        }
    }

    fn dim(&self, role: &str, in_block: bool, d: usize) -> Result<usize, String> {
        let spec = self
            .role_spec(role, in_block)
            .ok_or_else(|| format!("unknown role '{role}'"))?;
        let text = spec
            .shape
            .get(d)
            .ok_or_else(|| format!("role '{role}' has no dimension {d} in its shape"))?;
        self.eval(text)
    }

    fn eval(&self, text: &str) -> Result<usize, String> {
        let v = expr::eval_map(text, self.hparams)?;
        if v < 0.0 || v.fract() != 0.0 {
            return Err(format!("'{text}' = {v} is not a whole non-negative number"));
        }
        Ok(v as usize)
    }

    fn input(&self, name: &str) -> Result<ValueId, String> {
        self.ids
            .get(name)
            .copied()
            .ok_or_else(|| format!("value '{name}' is used before it is computed"))
    }

    fn output(&mut self, name: &str, width: usize) -> Result<ValueId, String> {
        if let Some(&id) = self.ids.get(name) {
            let old = self.values[id].width;
            if old != width {
                return Err(format!(
                    "'{name}' is reassigned with width {width}, it had {old}"
                ));
            }
            return Ok(id);
        }
        self.values.push(ValueInfo {
            name: name.to_string(),
            width,
        });
        self.ids.insert(name.to_string(), self.values.len() - 1);
        Ok(self.values.len() - 1)
    }

    fn width(&self, id: ValueId) -> usize {
        self.values[id].width
    }

    fn arity(l: &OpLine, inputs: usize, outputs: usize) -> Result<(), String> {
        if l.args.len() != inputs || l.outputs.len() != outputs {
            return Err(format!(
                "{} takes {inputs} argument(s) and gives {outputs} output(s)",
                l.op
            ));
        }
        Ok(())
    }

    fn op(
        &mut self,
        l: &OpLine,
        line: &str,
        in_block: bool,
        steps: &mut Vec<Step>,
    ) -> Result<(), String> {
        let head_dim = self.eval("head_dim")?;
        let step = |op, inputs, weights, outputs, params| Step {
            op,
            inputs,
            weights,
            outputs,
            params,
            name: line.to_string(),
        };
        match l.op.as_str() {
            "embed" => {
                Self::arity(l, 1, 1)?;
                let w = self.weight(&l.args[0], in_block)?;
                let width = self.dim(&l.args[0], in_block, 0)?;
                let out = self.output(&l.outputs[0], width)?;
                steps.push(step(Op::Embed, vec![], vec![w], vec![out], vec![]));
            }
            "rmsnorm" | "head_rmsnorm" => {
                Self::arity(l, 2, 1)?;
                let x = self.input(&l.args[0])?;
                let w = self.weight(&l.args[1], in_block)?;
                let wlen = self.dim(&l.args[1], in_block, 0)?;
                let per_head = l.op == "head_rmsnorm";
                let expect = if per_head { head_dim } else { self.width(x) };
                if wlen != expect || (per_head && !self.width(x).is_multiple_of(head_dim)) {
                    return Err(format!(
                        "norm weight '{}' has {wlen} values, the input '{}' needs {expect}",
                        l.args[1], l.args[0]
                    ));
                }
                let out = self.output(&l.outputs[0], self.width(x))?;
                let op = if per_head { Op::HeadRmsNorm } else { Op::RmsNorm };
                steps.push(step(op, vec![x], vec![w], vec![out], vec![]));
            }
            "matmul" => {
                if !(2..=3).contains(&l.args.len()) || l.outputs.len() != 1 {
                    return Err("matmul takes (x, weight[, bias]) and gives one output".into());
                }
                let x = self.input(&l.args[0])?;
                let bias = match l.args.get(2) {
                    Some(b) => self.weight(b, in_block)?,
                    None => None,
                };
                self.matmul(x, &l.args[1], bias, &l.outputs[0], in_block, line, steps)?;
            }
            "qkv" => {
                Self::arity(l, 1, 3)?;
                let x = self.input(&l.args[0])?;
                if self.fused_qkv {
                    let bias = self.maybe_weight("attn_qkv_bias", in_block)?;
                    let fused = self.matmul(x, "attn_qkv", bias, "qkv", in_block, line, steps)?;
                    let widths = [
                        self.eval("n_head * head_dim")?,
                        self.eval("n_kv_head * head_dim")?,
                        self.eval("n_kv_head * head_dim")?,
                    ];
                    self.split(fused, &widths, &l.outputs, line, steps)?;
                } else {
                    for (out, role) in l.outputs.iter().zip(["attn_q", "attn_k", "attn_v"]) {
                        let bias = self.maybe_weight(&format!("{role}_bias"), in_block)?;
                        self.matmul(x, role, bias, out, in_block, line, steps)?;
                    }
                }
            }
            "split" => {
                if l.args.len() < 3 || l.outputs.len() + 1 != l.args.len() {
                    return Err("split takes (x, width, width, ...) with one output per width".into());
                }
                let x = self.input(&l.args[0])?;
                let widths = l.args[1..]
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.split(x, &widths, &l.outputs, line, steps)?;
            }
            "rope" => {
                Self::arity(l, 1, 1)?;
                let x = self.input(&l.args[0])?;
                if !self.width(x).is_multiple_of(head_dim) {
                    return Err(format!("rope input '{}' is not a whole number of heads", l.args[0]));
                }
                let out = self.output(&l.outputs[0], self.width(x))?;
                steps.push(step(Op::Rope, vec![x], vec![], vec![out], vec![]));
            }
            "attention" => {
                Self::arity(l, 3, 1)?;
                let ids = [self.input(&l.args[0])?, self.input(&l.args[1])?, self.input(&l.args[2])?];
                let (qw, kw) = (self.eval("n_head * head_dim")?, self.eval("n_kv_head * head_dim")?);
                let found = [self.width(ids[0]), self.width(ids[1]), self.width(ids[2])];
                if found != [qw, kw, kw] {
                    return Err(format!("attention needs widths q {qw}, k {kw}, v {kw}; found {found:?}"));
                }
                if !in_block {
                    return Err("attention belongs in the per-layer block (it owns a KV cache)".into());
                }
                let out = self.output(&l.outputs[0], qw)?;
                steps.push(step(Op::Attention, ids.to_vec(), vec![], vec![out], vec![]));
            }
            "add" | "silu_mul" => {
                Self::arity(l, 2, 1)?;
                let (a, b) = (self.input(&l.args[0])?, self.input(&l.args[1])?);
                if self.width(a) != self.width(b) {
                    return Err(format!("'{}' and '{}' differ in width", l.args[0], l.args[1]));
                }
                let out = self.output(&l.outputs[0], self.width(a))?;
                let op = if l.op == "add" { Op::Add } else { Op::SiluMul };
                steps.push(step(op, vec![a, b], vec![], vec![out], vec![]));
            }
            other => {
                return Err(format!(
                    "unknown op '{other}' (ops: embed, rmsnorm, head_rmsnorm, matmul, qkv, split, rope, attention, add, silu_mul)"
                ))
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        x: ValueId,
        role: &str,
        bias: Option<String>,
        out: &str,
        in_block: bool,
        line: &str,
        steps: &mut Vec<Step>,
    ) -> Result<ValueId, String> {
        let w = self.weight(role, in_block)?;
        let (k, n) = (self.dim(role, in_block, 0)?, self.dim(role, in_block, 1)?);
        if w.is_none() {
            return Err(format!("matmul weight '{role}' is optional and absent"));
        }
        if k != self.width(x) {
            return Err(format!(
                "'{role}' has rows of {k}, the input '{}' has width {}",
                self.values[x].name,
                self.width(x)
            ));
        }
        let id = self.output(out, n)?;
        steps.push(Step {
            op: Op::Matmul,
            inputs: vec![x],
            weights: vec![w, bias],
            outputs: vec![id],
            params: vec![],
            name: line.to_string(),
        });
        Ok(id)
    }

    fn split(
        &mut self,
        x: ValueId,
        widths: &[usize],
        outputs: &[String],
        line: &str,
        steps: &mut Vec<Step>,
    ) -> Result<(), String> {
        if widths.iter().sum::<usize>() != self.width(x) || !(2..=3).contains(&widths.len()) {
            return Err(format!(
                "split widths {widths:?} must be 2 or 3 and add up to the input width {}",
                self.width(x)
            ));
        }
        let outs = outputs
            .iter()
            .zip(widths)
            .map(|(o, &w)| self.output(o, w))
            .collect::<Result<Vec<_>, _>>()?;
        steps.push(Step {
            op: Op::Split,
            inputs: vec![x],
            weights: vec![],
            outputs: outs,
            params: widths.to_vec(),
            name: line.to_string(),
        });
        Ok(())
    }
}
