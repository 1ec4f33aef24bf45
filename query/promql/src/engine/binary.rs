//! Binary operators: arithmetic, comparisons, set operators, with vector matching.

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::model::{Labels, METRIC_NAME};

use super::EngineError;
use super::eval::Evaluator;
use super::value::{Grid, RV, VSeries, exec, go_labels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, EngineError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(exec(format!("unknown binary operator {other}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// The value and whether to keep it (comparisons filter, keeping the left value).
fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

pub(crate) fn eval_binary(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    g: &Grid,
) -> Result<RV, EngineError> {
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, g)?;
    let rhs = ev.eval(&b.rhs, g)?;
    match (lhs, rhs) {
        (RV::Scalar(l), RV::Scalar(r)) => Ok(RV::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&a, &c)| {
                    let (v, keep) = apply(op, a, c);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (RV::Vector(l), RV::Scalar(r)) => {
            Ok(RV::Vector(vector_scalar(op, l, &r, false, return_bool)))
        }
        (RV::Scalar(l), RV::Vector(r)) => {
            Ok(RV::Vector(vector_scalar(op, r, &l, true, return_bool)))
        }
        (RV::Vector(l), RV::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            if op.is_set() {
                return Ok(RV::Vector(set_op(op, l, r, &matching, g.len())));
            }
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            Ok(RV::Vector(vector_vector(
                op,
                l,
                r,
                &matching,
                &card,
                return_bool,
                g.len(),
            )?))
        }
        (l, r) => Err(exec(format!(
            "binary expression must contain only scalar and instant vector types, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: Op,
    mut vs: Vec<VSeries>,
    sc: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Vec<VSeries> {
    let drop = return_bool || !op.is_comparison();
    for s in &mut vs {
        s.drop_name |= drop;
        for (v, &c) in s.vals.iter_mut().zip(sc) {
            let Some(x) = *v else { continue };
            let (l, r) = if scalar_left { (c, x) } else { (x, c) };
            let (mut val, keep) = apply(op, l, r);
            // A comparison keeps the vector's value even when the scalar is on the left.
            if op.is_comparison() && scalar_left {
                val = r;
            }
            *v = if return_bool {
                Some(if keep { 1.0 } else { 0.0 })
            } else if keep {
                Some(val)
            } else {
                None
            };
        }
    }
    vs
}

/// The labels two series are matched on.
fn signature(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            l.only(&names)
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            l.without(&names)
        }
        None => l.without(&[METRIC_NAME]),
    }
}

/// Interns signatures to small ids.
fn sig_ids(
    sides: [&[VSeries]; 2],
    matching: &Option<LabelModifier>,
) -> (Vec<usize>, Vec<usize>, Vec<Labels>) {
    let mut ids: HashMap<Labels, usize> = HashMap::new();
    let mut sigs = Vec::new();
    let mut out = [Vec::new(), Vec::new()];
    for (k, side) in sides.iter().enumerate() {
        for s in side.iter() {
            let sig = signature(&s.labels, matching);
            let next = ids.len();
            let id = *ids.entry(sig.clone()).or_insert_with(|| {
                sigs.push(sig);
                next
            });
            out[k].push(id);
        }
    }
    let [a, b] = out;
    (a, b, sigs)
}

fn set_op(
    op: Op,
    mut l: Vec<VSeries>,
    mut r: Vec<VSeries>,
    matching: &Option<LabelModifier>,
    n: usize,
) -> Vec<VSeries> {
    let (lsig, rsig, sigs) = sig_ids([&l, &r], matching);
    // Per signature and step: whether the other side has a sample there.
    let presence = |side: &[VSeries], ids: &[usize]| {
        let mut p = vec![false; sigs.len() * n];
        for (s, &id) in side.iter().zip(ids) {
            for (i, v) in s.vals.iter().enumerate() {
                if v.is_some() {
                    p[id * n + i] = true;
                }
            }
        }
        p
    };
    match op {
        Op::And | Op::Unless => {
            let p = presence(&r, &rsig);
            let want = op == Op::And;
            for (s, &id) in l.iter_mut().zip(&lsig) {
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if p[id * n + i] != want {
                        *v = None;
                    }
                }
            }
            l
        }
        _ => {
            let p = presence(&l, &lsig);
            for (s, &id) in r.iter_mut().zip(&rsig) {
                for (i, v) in s.vals.iter_mut().enumerate() {
                    if p[id * n + i] {
                        *v = None;
                    }
                }
            }
            l.extend(r);
            l
        }
    }
}

/// Prometheus' `resultMetric`: the labels of a matched pair's result.
fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
) -> Labels {
    let mut l = many.clone();
    if matches!(card, VectorMatchCardinality::OneToOne) {
        l = signature_keep(&l, matching);
    }
    if let Some(include) = card.labels() {
        for name in &include.labels {
            match one.get(name) {
                Some(v) => {
                    let v = v.to_string();
                    l.set(name, &v);
                }
                None => l.remove(name),
            }
        }
    }
    l
}

/// One-to-one results keep only the `on` labels, or drop the `ignoring` ones (the name is
/// handled by the drop flag).
fn signature_keep(l: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            l.only(&names)
        }
        Some(LabelModifier::Exclude(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            l.without(&names)
        }
        None => l.clone(),
    }
}

fn vector_vector(
    op: Op,
    l: Vec<VSeries>,
    r: Vec<VSeries>,
    matching: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
    n: usize,
) -> Result<Vec<VSeries>, EngineError> {
    if matches!(card, VectorMatchCardinality::ManyToMany) {
        return Err(exec("many-to-many only allowed for set operators"));
    }
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (lsig, rsig, sigs) = sig_ids([&l, &r], matching);
    let (many, many_sig, one, one_sig) = if swapped {
        (&r, &rsig, &l, &lsig)
    } else {
        (&l, &lsig, &r, &rsig)
    };
    let mut one_groups: Vec<Vec<usize>> = vec![Vec::new(); sigs.len()];
    for (k, &id) in one_sig.iter().enumerate() {
        one_groups[id].push(k);
    }
    let mut any_many = vec![false; n];
    for s in many.iter() {
        for (i, v) in s.vals.iter().enumerate() {
            any_many[i] |= v.is_some();
        }
    }
    // The "one" side must be unique per signature at every step where matching happens.
    for (id, group) in one_groups.iter().enumerate() {
        if group.len() < 2 {
            continue;
        }
        for (i, &active) in any_many.iter().enumerate() {
            if !active {
                continue;
            }
            let present: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&k| one[k].vals[i].is_some())
                .collect();
            if present.len() > 1 {
                let side = if swapped { "left" } else { "right" };
                let matched = match matching {
                    Some(LabelModifier::Include(_)) => sigs[id].clone(),
                    _ => {
                        let mut x = sigs[id].clone();
                        x.remove(METRIC_NAME);
                        x
                    }
                };
                return Err(exec(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    go_labels(&matched),
                    side,
                    go_labels(&one[present[1]].labels),
                    go_labels(&one[present[0]].labels),
                )));
            }
        }
    }
    let drop = return_bool || !op.is_comparison();
    let mut out: Vec<VSeries> = Vec::new();
    // Steps where the pair matched, kept or not: uniqueness is checked before filtering.
    let mut matched: Vec<Vec<bool>> = Vec::new();
    let mut out_key: Vec<usize> = Vec::new();
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    for (mi, m) in many.iter().enumerate() {
        let group = &one_groups[many_sig[mi]];
        if group.is_empty() {
            continue;
        }
        for i in 0..n {
            let Some(mv) = m.vals[i] else { continue };
            let Some(oi) = group.iter().copied().find(|&k| one[k].vals[i].is_some()) else {
                continue;
            };
            let k = *pairs.entry((mi, oi)).or_insert_with(|| {
                out.push(VSeries {
                    labels: result_labels(&m.labels, &one[oi].labels, matching, card),
                    drop_name: m.drop_name || drop,
                    vals: vec![None; n],
                });
                matched.push(vec![false; n]);
                out_key.push(many_sig[mi]);
                out.len() - 1
            });
            matched[k][i] = true;
            let ov = one[oi].vals[i].unwrap_or(f64::NAN);
            let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
            let (val, keep) = apply(op, lv, rv);
            out[k].vals[i] = if return_bool {
                Some(if keep { 1.0 } else { 0.0 })
            } else if keep {
                Some(val)
            } else {
                None
            };
        }
    }
    // Results must be unique: per signature (one-to-one) or per result labels (grouping).
    let mut seen: HashMap<(usize, Option<&Labels>), Vec<usize>> = HashMap::new();
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    for (k, s) in out.iter().enumerate() {
        let key = (out_key[k], if one_to_one { None } else { Some(&s.labels) });
        seen.entry(key).or_default().push(k);
    }
    for ks in seen.values() {
        if ks.len() < 2 {
            continue;
        }
        for i in 0..n {
            if ks
                .iter()
                .filter(|&&k| matched[k].get(i).copied().unwrap_or(false))
                .count()
                > 1
            {
                return Err(exec(if one_to_one {
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                } else {
                    "multiple matches for labels: grouping labels must ensure unique label set"
                }));
            }
        }
    }
    Ok(out)
}
