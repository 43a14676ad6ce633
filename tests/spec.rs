//! The layer-spec grammar against the report's Appendix A and against malformed specs.

use mlp::activation::Activation;
use mlp::spec::{LayerSpec, NetSpec};

/// Every spec of Appendix A as printed there, two-line ones joined by the line break of the report.
const APPENDIX_A: &[(&str, &str)] = &[
    ("AffNet", "linear,fc,784,10,0.01"),
    (
        "MLP1_ReLU",
        "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01",
    ),
    (
        "MLP1_Sigmoid",
        "linear,fc1,784,256,0.01; sigmoid,sg1; linear,fc2,256,10,0.01",
    ),
    (
        "MLP1_ReLU_ReLU",
        "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01; relu,relu2",
    ),
    (
        "MLP1_ReLU_Sigmoid",
        "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01; sigmoid,sg1",
    ),
    (
        "MLP1_Sigmoid_Sigmoid",
        "linear,fc1,784,256,0.01; sigmoid,sg1; linear,fc2,256,10,0.01; sigmoid,sg2",
    ),
    (
        "MLP2_ReLU",
        "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01",
    ),
    (
        "MLP2_Sigmoid",
        "linear,fc1,784,500,0.01; sigmoid,sg1; linear,fc2,500,256,0.01; sigmoid,sg2;\nlinear,fc3,256,10,0.01",
    ),
    (
        "MLP2_ReLU_ReLU",
        "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01; relu,relu3",
    ),
    (
        "MLP2_ReLU_Sigmoid",
        "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01; sigmoid, sg1",
    ),
    (
        "MLP2_Sigmoid_Sigmoid",
        "linear,fc1,784,500,0.01; sigmoid,sg1; linear,fc2,500,256,0.01; sigmoid,sg2;\nlinear,fc3,256,10,0.01; sigmoid,sg3",
    ),
    (
        "MLP2_Sigmoid_Sigmoid_ENH",
        "linear,fc1,784,500,1; sigmoid,sg1; linear,fc2,500,256,0.1; sigmoid,sg2;\nlinear,fc3,256,10,0.01; sigmoid,sg3",
    ),
];

#[test]
fn every_appendix_a_spec_parses_and_fits_mnist() {
    for (name, text) in APPENDIX_A {
        let spec: NetSpec = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        spec.check_data(784, 10)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            spec.to_string().parse::<NetSpec>().unwrap(),
            spec,
            "{name} round trip"
        );
        let linears = spec
            .layers()
            .iter()
            .filter(|l| matches!(l, LayerSpec::Linear { .. }))
            .count();
        let expected = if name.starts_with("AffNet") {
            1
        } else if name.starts_with("MLP1") {
            2
        } else {
            3
        };
        assert_eq!(linears, expected, "{name}");
    }
}

#[test]
fn appendix_a_fields_are_read_exactly() {
    let spec: NetSpec = APPENDIX_A[11].1.parse().unwrap();
    assert_eq!(
        spec.layers(),
        &[
            LayerSpec::Linear {
                name: "fc1".into(),
                inp: 784,
                out: 500,
                std: 1.0
            },
            LayerSpec::Activation {
                name: "sg1".into(),
                act: Activation::Sigmoid
            },
            LayerSpec::Linear {
                name: "fc2".into(),
                inp: 500,
                out: 256,
                std: 0.1
            },
            LayerSpec::Activation {
                name: "sg2".into(),
                act: Activation::Sigmoid
            },
            LayerSpec::Linear {
                name: "fc3".into(),
                inp: 256,
                out: 10,
                std: 0.01
            },
            LayerSpec::Activation {
                name: "sg3".into(),
                act: Activation::Sigmoid
            },
        ]
    );
}

#[test]
fn tolerant_of_whitespace_case_and_empty_segments() {
    let a: NetSpec =
        "  LINEAR , fc1 , 784 , 256 , 1e-2 ;; ReLU,relu1 ;\n\n linear,fc2,256,10,0.01 ;  "
            .parse()
            .unwrap();
    let b: NetSpec = APPENDIX_A[1].1.parse().unwrap();
    assert_eq!(a, b);
}

#[test]
fn malformed_specs_name_the_layer_and_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("", "the layer spec is empty"),
        (" ; ;\n", "the layer spec is empty"),
        ("relu,r1", "the layer spec \"relu,r1\" has no linear layer"),
        (
            "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,265,10,0.01",
            "layer 3 \"linear,fc2,265,10,0.01\": input 265 does not match the previous output 256",
        ),
        (
            "softmax,s1; linear,fc,784,10,0.01",
            "layer 1 \"softmax,s1\": unknown layer kind \"softmax\" (expected linear, relu, sigmoid, tanh or leaky_relu)",
        ),
        (
            "linear,fc,784,10,0.01; leaky_relu,l,-0.5",
            "layer 2 \"leaky_relu,l,-0.5\": slope must be a finite number >= 0, got -0.5",
        ),
        (
            "linear,fc,784,10,0.01; leaky_relu,l,0.1,2",
            "layer 2 \"leaky_relu,l,0.1,2\": leaky_relu takes 2 or 3 fields (leaky_relu,NAME[,SLOPE]), got 4",
        ),
        (
            "linear,fc,784,10,0.01; tanh,t,1",
            "layer 2 \"tanh,t,1\": tanh takes 2 fields (tanh,NAME), got 3",
        ),
        (
            "linear,fc,16,4,1e39",
            "layer 1 \"linear,fc,16,4,1e39\": std 1e39 is too large (at most 1e30)",
        ),
        (
            "linear,fc,784,10",
            "layer 1 \"linear,fc,784,10\": linear takes 5 fields (linear,NAME,IN,OUT,STD), got 4",
        ),
        (
            "linear,fc,784,10,0.01,7",
            "layer 1 \"linear,fc,784,10,0.01,7\": linear takes 5 fields (linear,NAME,IN,OUT,STD), got 6",
        ),
        (
            "linear,fc,784,10,0.01; relu",
            "layer 2 \"relu\": relu takes 2 fields (relu,NAME), got 1",
        ),
        (
            "linear,fc,784,10,0.01; sigmoid,s,extra",
            "layer 2 \"sigmoid,s,extra\": sigmoid takes 2 fields (sigmoid,NAME), got 3",
        ),
        (
            "linear,fc,seven,10,0.01",
            "layer 1 \"linear,fc,seven,10,0.01\": input \"seven\" is not a whole number",
        ),
        (
            "linear,fc,784,-10,0.01",
            "layer 1 \"linear,fc,784,-10,0.01\": output \"-10\" is not a whole number",
        ),
        (
            "linear,fc,784,10.5,0.01",
            "layer 1 \"linear,fc,784,10.5,0.01\": output \"10.5\" is not a whole number",
        ),
        (
            "linear,fc,0,10,0.01",
            "layer 1 \"linear,fc,0,10,0.01\": input must be at least 1, got 0",
        ),
        (
            "linear,fc,784,10,abc",
            "layer 1 \"linear,fc,784,10,abc\": std \"abc\" is not a number",
        ),
        (
            "linear,fc,784,10,NaN",
            "layer 1 \"linear,fc,784,10,NaN\": std must be a finite number > 0, got NaN",
        ),
        (
            "linear,fc,784,10,inf",
            "layer 1 \"linear,fc,784,10,inf\": std must be a finite number > 0, got inf",
        ),
        (
            "linear,fc,784,10,-0.01",
            "layer 1 \"linear,fc,784,10,-0.01\": std must be a finite number > 0, got -0.01",
        ),
        (
            "linear,fc,784,10,0",
            "layer 1 \"linear,fc,784,10,0\": std must be a finite number > 0, got 0",
        ),
        (
            "linear,,784,10,0.01",
            "layer 1 \"linear,,784,10,0.01\": the layer name is empty",
        ),
        (
            ",fc,784,10,0.01",
            "layer 1 \",fc,784,10,0.01\": the layer kind is empty",
        ),
        (
            "linear,fc,784,10,0.01; relu,fc",
            "layer 2 \"relu,fc\": name \"fc\" is already used by layer 1",
        ),
        (
            "linear,fc,784,99999999,0.01",
            "layer 1 \"linear,fc,784,99999999,0.01\": output 99999999 is larger than the 16777216 this tool allows",
        ),
        (
            "linear,a,784,1000000,0.01; linear,b,1000000,10,0.01",
            "layer 1 \"linear,a,784,1000000,0.01\": the network would hold more than 268435456 parameters",
        ),
    ];
    for (text, expected) in cases {
        let err = text.parse::<NetSpec>().expect_err(text).to_string();
        assert!(
            err.starts_with(expected),
            "spec {text:?}\n  got:  {err}\n  want: {expected}..."
        );
    }
}

#[test]
fn data_checks_name_the_offending_layer() {
    let spec: NetSpec = "linear,fc1,700,256,0.01; relu,relu1; linear,fc2,256,10,0.01"
        .parse()
        .unwrap();
    assert_eq!(
        spec.check_data(784, 10).unwrap_err().to_string(),
        "layer 1 \"linear,fc1,700,256,0.01\": input 700 does not match the data's input width 784"
    );
    let spec: NetSpec = "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,12,0.01; relu,r2"
        .parse()
        .unwrap();
    assert_eq!(
        spec.check_data(784, 10).unwrap_err().to_string(),
        "layer 3 \"linear,fc2,256,12,0.01\": output 12 does not match the 10 classes in the data"
    );
}

/// The activations added after the report parse, print back in canonical form, and name runs.
#[test]
fn tanh_and_leaky_relu_parse_and_round_trip() {
    let spec: NetSpec = "linear,a,784,64,0.01; TANH,t; linear,b,64,32,0.01; leaky_relu,l; \
                         linear,c,32,10,0.01; leaky_relu,m,0.2"
        .parse()
        .unwrap();
    assert_eq!(
        spec.layers()[1],
        LayerSpec::Activation {
            name: "t".into(),
            act: Activation::Tanh
        }
    );
    assert_eq!(
        spec.layers()[3],
        LayerSpec::Activation {
            name: "l".into(),
            act: Activation::LeakyRelu(0.01)
        }
    );
    assert_eq!(
        spec.layers()[5],
        LayerSpec::Activation {
            name: "m".into(),
            act: Activation::LeakyRelu(0.2)
        }
    );
    assert_eq!(spec.to_string().parse::<NetSpec>().unwrap(), spec);
    assert_eq!(spec.derived_name("CE"), "MLP2_Tanh_LeakyReLU_LeakyReLU_CE");
}
