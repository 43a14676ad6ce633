//! The layer-spec grammar of the reference framework's `-layer` option (report, Appendix A).
//!
//! ```text
//! spec    = segment { (";" | newline) segment }      empty segments are skipped
//! segment = "linear," NAME "," IN "," OUT "," STD    weights ~ N(0, STD^2), biases 0
//!         | "relu," NAME | "sigmoid," NAME | "tanh," NAME
//!         | "leaky_relu," NAME [ "," SLOPE ]            SLOPE >= 0, 0.01 when not given
//! ```
//! Whitespace around fields is ignored and kinds are case-insensitive, so every string of Appendix A parses
//! as printed there. A spec is parsed into plain data ([`NetSpec`]), checked whole (names unique, the
//! dimensions chain, numbers finite), checked against the data ([`NetSpec::check_data`]), and only then
//! turned into layers (`layers::build`). `Display` prints the canonical form, which parses back to the
//! same spec.

use std::fmt;
use std::str::FromStr;

use crate::activation::Activation;

/// Largest width of one layer; far beyond any MLP on IDX images, small enough to catch a typo.
pub const MAX_WIDTH: usize = 1 << 24;
/// The longest layer name, in bytes: names go into CSV columns, checkpoints and exports.
pub const MAX_LAYER_NAME: usize = 64;

/// Largest number of parameters in a whole network: with gradients and velocities that is 3 GiB already.
pub const MAX_PARAMS: usize = 1 << 28;

/// One layer as written in the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    Linear {
        name: String,
        inp: usize,
        out: usize,
        std: f64,
    },
    /// An element-wise activation.
    Activation { name: String, act: Activation },
}

impl LayerSpec {
    pub fn name(&self) -> &str {
        match self {
            LayerSpec::Linear { name, .. } | LayerSpec::Activation { name, .. } => name,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSpec::Linear {
                name,
                inp,
                out,
                std,
            } => write!(f, "linear,{name},{inp},{out},{std}"),
            LayerSpec::Activation { name, act } => f.write_str(&act.segment(name)),
        }
    }
}

/// A whole network spec: its layers in order, and each layer's text as the user wrote it (for errors).
#[derive(Debug, Clone)]
pub struct NetSpec {
    layers: Vec<LayerSpec>,
    sources: Vec<String>,
}

impl PartialEq for NetSpec {
    fn eq(&self, other: &Self) -> bool {
        self.layers == other.layers
    }
}

/// Why a spec was refused. `Layer` names the segment by its number (from 1, empty segments not counted)
/// and its text, e.g. `layer 3 "linear,fc2,265,10,0.01": input 265 does not match the previous output 256`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("layer {number} \"{text}\": {problem}")]
    Layer {
        number: usize,
        text: String,
        problem: String,
    },
    #[error("{0}")]
    Whole(String),
}

impl FromStr for NetSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let mut layers: Vec<LayerSpec> = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        let mut previous_out: Option<usize> = None;
        let mut params: usize = 0;
        for segment in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let number = layers.len() + 1;
            let fail = |problem: String| SpecError::Layer {
                number,
                text: segment.to_string(),
                problem,
            };
            let layer = parse_segment(segment).map_err(fail)?;
            if let Some(first) = layers.iter().position(|l| l.name() == layer.name()) {
                return Err(fail(format!(
                    "name \"{}\" is already used by layer {}",
                    layer.name(),
                    first + 1
                )));
            }
            if let LayerSpec::Linear { inp, out, .. } = layer {
                if let Some(prev) = previous_out.filter(|&prev| prev != inp) {
                    return Err(fail(format!(
                        "input {inp} does not match the previous output {prev}"
                    )));
                }
                previous_out = Some(out);
                params = inp
                    .checked_mul(out)
                    .and_then(|w| w.checked_add(out))
                    .and_then(|p| p.checked_add(params))
                    .filter(|&p| p <= MAX_PARAMS)
                    .ok_or_else(|| {
                        fail(format!(
                            "the network would hold more than {MAX_PARAMS} parameters, more memory than this tool allows"
                        ))
                    })?;
            }
            layers.push(layer);
            sources.push(segment.to_string());
        }
        if layers.is_empty() {
            return Err(SpecError::Whole(
                "the layer spec is empty: give at least one linear layer".into(),
            ));
        }
        if previous_out.is_none() {
            return Err(SpecError::Whole(format!(
                "the layer spec \"{text}\" has no linear layer: give at least one linear,NAME,IN,OUT,STD"
            )));
        }
        Ok(NetSpec { layers, sources })
    }
}

fn parse_segment(segment: &str) -> Result<LayerSpec, String> {
    let fields: Vec<&str> = segment.split(',').map(str::trim).collect();
    let kind = fields[0].to_ascii_lowercase();
    let expect_fields = |want: usize, form: &str| {
        if fields.len() == want {
            Ok(())
        } else {
            Err(format!(
                "{kind} takes {want} fields ({form}), got {}",
                fields.len()
            ))
        }
    };
    let name = || -> Result<String, String> {
        match fields.get(1).copied().unwrap_or("") {
            "" => Err("the layer name is empty".into()),
            name if name.len() > MAX_LAYER_NAME => Err(format!(
                "the layer name is {} bytes long; at most {MAX_LAYER_NAME}",
                name.len()
            )),
            name if name.chars().any(char::is_control) => {
                Err("the layer name must be printable".into())
            }
            name => Ok(name.to_string()),
        }
    };
    match kind.as_str() {
        "linear" => {
            expect_fields(5, "linear,NAME,IN,OUT,STD")?;
            Ok(LayerSpec::Linear {
                name: name()?,
                inp: parse_width("input", fields[2])?,
                out: parse_width("output", fields[3])?,
                std: parse_std(fields[4])?,
            })
        }
        "" => Err(format!("the layer kind is empty (expected {KINDS})")),
        other => match Activation::parse(other, fields.get(2..).unwrap_or(&[]), fields.len()) {
            Some(act) => {
                let act = act?;
                Ok(LayerSpec::Activation { name: name()?, act })
            }
            None => Err(format!(
                "unknown layer kind \"{:.40}\" (expected {KINDS})",
                fields[0]
            )),
        },
    }
}

/// The layer kinds, for messages.
const KINDS: &str = "linear, relu, sigmoid, tanh or leaky_relu";

fn parse_width(what: &str, field: &str) -> Result<usize, String> {
    let width: usize = field
        .parse()
        .map_err(|_| format!("{what} \"{field}\" is not a whole number"))?;
    if width == 0 {
        return Err(format!("{what} must be at least 1, got 0"));
    }
    if width > MAX_WIDTH {
        return Err(format!(
            "{what} {width} is larger than the {MAX_WIDTH} this tool allows"
        ));
    }
    Ok(width)
}

fn parse_std(field: &str) -> Result<f64, String> {
    let std: f64 = field
        .parse()
        .map_err(|_| format!("std \"{field}\" is not a number"))?;
    if !(std.is_finite() && std > 0.0) {
        return Err(format!("std must be a finite number > 0, got {field:.40}"));
    }
    // Weights are f32: a std they cannot hold would draw infinities.
    if std > 1e30 {
        return Err(format!("std {field:.40} is too large (at most 1e30)"));
    }
    Ok(std)
}

impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{layer}")?;
        }
        Ok(())
    }
}

impl NetSpec {
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    fn linears(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.layers.iter().enumerate().filter_map(|(i, l)| match l {
            LayerSpec::Linear { inp, out, .. } => Some((i, *inp, *out)),
            _ => None,
        })
    }

    fn layer_error(&self, index: usize, problem: String) -> SpecError {
        SpecError::Layer {
            number: index + 1,
            text: self.sources[index].clone(),
            problem,
        }
    }

    /// Width of the network's input (the first Linear's IN).
    pub fn input_width(&self) -> usize {
        self.linears().next().map_or(0, |(_, inp, _)| inp)
    }

    /// Width of the network's output (the last Linear's OUT).
    pub fn output_width(&self) -> usize {
        self.linears().last().map_or(0, |(_, _, out)| out)
    }

    /// Checks that the network fits data with `input_width` features per sample and `classes` classes.
    pub fn check_data(&self, input_width: usize, classes: usize) -> Result<(), SpecError> {
        let (first, inp, _) = self
            .linears()
            .next()
            .expect("a parsed spec has a linear layer");
        if inp != input_width {
            return Err(self.layer_error(
                first,
                format!("input {inp} does not match the data's input width {input_width}"),
            ));
        }
        let (last, _, out) = self
            .linears()
            .last()
            .expect("a parsed spec has a linear layer");
        if out != classes {
            return Err(self.layer_error(
                last,
                format!("output {out} does not match the {classes} classes in the data"),
            ));
        }
        Ok(())
    }

    /// A run name in the style of the report's Table 3: `AffNet` or `MLP<hidden layers>`, then the hidden
    /// activation (once when all hidden layers share it, else one per hidden layer, `Identity` for none),
    /// then the output activation if any, then the loss: `MLP1_ReLU_CE`, `MLP2_ReLU_CE`,
    /// `MLP2_Sigmoid_Sigmoid_MSE`, `AffNet_CE`. Widths and stds are not part of it.
    pub fn derived_name(&self, loss_tag: &str) -> String {
        // One block per Linear: the activations that follow it.
        let mut blocks: Vec<String> = Vec::new();
        for layer in &self.layers {
            let act = match layer {
                LayerSpec::Linear { .. } => {
                    blocks.push(String::new());
                    continue;
                }
                LayerSpec::Activation { act, .. } => act.label(),
            };
            if let Some(block) = blocks.last_mut() {
                if !block.is_empty() {
                    block.push('_');
                }
                block.push_str(act);
            }
        }
        let output = blocks.pop().unwrap_or_default();
        let hidden: Vec<String> = blocks
            .into_iter()
            .map(|b| {
                if b.is_empty() {
                    "Identity".to_string()
                } else {
                    b
                }
            })
            .collect();
        let layers = hidden.len();
        let shared = hidden.windows(2).all(|w| w[0] == w[1]);
        let mut parts = vec![if layers == 0 {
            "AffNet".to_string()
        } else {
            format!("MLP{layers}")
        }];
        parts.extend(hidden.into_iter().take(if shared { 1 } else { layers }));
        if !output.is_empty() {
            parts.push(output);
        }
        parts.push(loss_tag.to_string());
        parts.join("_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        let spec: NetSpec = " Linear , fc1,784, 256 ,0.01;RELU,r;\n linear,fc2,256,10,1e-2;"
            .parse()
            .unwrap();
        assert_eq!(
            spec.to_string(),
            "linear,fc1,784,256,0.01; relu,r; linear,fc2,256,10,0.01"
        );
        assert_eq!(spec.to_string().parse::<NetSpec>().unwrap(), spec);
    }

    #[test]
    fn derived_names_follow_table_3() {
        let name = |s: &str, loss| s.parse::<NetSpec>().unwrap().derived_name(loss);
        assert_eq!(name("linear,fc,784,10,0.01", "CE"), "AffNet_CE");
        assert_eq!(
            name("linear,a,784,256,0.01; relu,r; linear,b,256,10,0.01", "CE"),
            "MLP1_ReLU_CE"
        );
        assert_eq!(
            name(
                "linear,a,784,256,0.01; relu,r; linear,b,256,10,0.01; sigmoid,s",
                "MSE"
            ),
            "MLP1_ReLU_Sigmoid_MSE"
        );
        assert_eq!(
            name("linear,a,784,9,0.01; linear,b,9,10,0.01", "MSE"),
            "MLP1_Identity_MSE"
        );
    }
}
