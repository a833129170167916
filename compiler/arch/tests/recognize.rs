//! Recognition on real models: the layers and the summary each kind of equation generates.

use npdec_arch::{recognize, render_table, Depth, LayerKind, Padding};
use npdec_diagnostics::SourceMap;
use npdec_symbolic::Model;
use std::path::Path;

fn model(source: &str) -> Model {
    let mut sources = SourceMap::new();
    let file = sources.add("test.npde", source);
    let base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let checked = npdec_sema::check(
        &mut sources,
        file,
        &npdec_sema::CheckOptions {
            base_dir: Some(base_dir),
        },
    );
    checked
        .model
        .unwrap_or_else(|| panic!("the test model must check: {:#?}", checked.diagnostics))
}

fn example(name: &str) -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let (_, checked) = npdec_sema::check_path(&path).expect("example is readable");
    checked.model.expect("example checks")
}

const MNIST: &str = "data mnist = idx(\"data/mnist10k-images-idx3-ubyte.gz\", \"data/mnist10k-labels-idx1-ubyte.gz\") split 8000 scale 1/255\n";

#[test]
fn heat_is_a_fixed_residual_convolution() {
    let architectures = recognize(&example("heat1d.npde"));
    assert_eq!(architectures.len(), 1);
    let heat = &architectures[0];
    assert_eq!(heat.depth, Depth::Fixed);
    assert_eq!(heat.parameters, 0);
    assert!(matches!(heat.layers[0].kind, LayerKind::Residual { .. }));
    let LayerKind::Convolution {
        kernel,
        padding,
        learnable,
        ..
    } = &heat.layers[1].kind
    else {
        panic!("{:?}", heat.layers)
    };
    assert_eq!(kernel, &vec![3]);
    assert_eq!(*padding, Padding::Constant);
    assert!(!learnable);
    assert_eq!(heat.summary, "2500 × residual(conv 3 1→1 fixed)");
}

#[test]
fn higher_orders_widen_the_kernel_and_periodic_pads_circularly() {
    let gray_scott = &recognize(&example("gray_scott.npde"))[0];
    let LayerKind::Convolution {
        kernel, padding, ..
    } = &gray_scott.layers[1].kind
    else {
        panic!()
    };
    assert_eq!((kernel.clone(), *padding), (vec![3, 3], Padding::Circular));
    let heat2d = &recognize(&example("heat2d.npde"))[0];
    let LayerKind::Convolution {
        kernel, padding, ..
    } = &heat2d.layers[1].kind
    else {
        panic!()
    };
    assert_eq!((kernel.clone(), *padding), (vec![5, 5], Padding::Mixed));
    assert!(matches!(
        heat2d.layers[0].kind,
        LayerKind::MultiStage { stages: 4 }
    ));
}

#[test]
fn dense_reaction_diffusion_is_a_residual_mlp() {
    let source = format!(
        "{MNIST}grid k index 784\nfield u(k)\nparam D = 0.1\nparam W[784, 784] ~ glorot\nparam b[784] = 0\nparam Wout[10, 784] ~ glorot\n\
         equation npde: dt(u) = D * laplace(u) + relu(W @ u + b)\nboundary u: neumann(0) on k\ninitial u = mnist.input\n\
         readout y = Wout @ u\ntrain npde on mnist using euler(steps = 4) loss cross_entropy(y, label)\n"
    );
    let network = &recognize(&model(&source))[0];
    assert_eq!(network.depth, Depth::Tied);
    assert_eq!(network.parameters, 1 + 784 * 784 + 784 + 10 * 784);
    let kinds: Vec<String> = network.layers.iter().map(|l| l.kind.short()).collect();
    assert_eq!(
        kinds,
        [
            "residual",
            "conv 3 1→1 fixed",
            "dense 784→784",
            "relu",
            "readout y",
            "dense 784→10"
        ]
    );
    assert_eq!(network.layers[2].parameters, 784 * 784 + 784);
    assert_eq!(network.summary, "4 × residual(conv 3 1→1 fixed + dense 784→784 + relu), weights shared by every step → readout y: dense 784→10");
}

#[test]
fn learnable_kernels_are_convolutions_with_channels() {
    let source = format!(
        "{MNIST}grid (r, c) image (28, 28)\nfield u(r, c)[8]\nparam K[8, 8, 3, 3] ~ he\nparam Wout[10, 6272] ~ glorot\n\
         equation npde: dt(u) = relu(conv(K, u))\nboundary u: dirichlet(0) on all\ninitial u = mnist.input\n\
         readout y = Wout @ u\ntrain npde on mnist using euler(steps = 3) loss cross_entropy(y, label)\n"
    );
    let network = &recognize(&model(&source))[0];
    let LayerKind::Convolution {
        kernel,
        in_channels,
        out_channels,
        learnable,
        padding,
        ..
    } = &network.layers[1].kind
    else {
        panic!()
    };
    assert_eq!(
        (
            kernel.clone(),
            *in_channels,
            *out_channels,
            *learnable,
            *padding
        ),
        (vec![3, 3], 8, 8, true, Padding::Constant)
    );
    assert_eq!(network.layers[1].parameters, 8 * 8 * 9);
    assert!(
        network
            .summary
            .starts_with("3 × residual(conv 3×3 8→8 + relu)"),
        "{}",
        network.summary
    );
}

#[test]
fn sequence_input_makes_a_recurrent_network() {
    let source = format!(
        "{MNIST}grid k index 64\nfield h(k)\nparam W[64, 64] ~ glorot\nparam U[64, 28] ~ glorot\nparam Wout[10, 64] ~ glorot\n\
         equation rnn: dt(h) = -h + tanh(W @ h + U @ mnist.sequence)\ninitial h = 0\nreadout y = Wout @ h\n\
         train rnn on mnist using euler(steps = 28) until 28 loss cross_entropy(y, label)\n"
    );
    let network = &recognize(&model(&source))[0];
    assert_eq!(network.depth, Depth::Recurrent);
    assert!(
        matches!(network.layers[0].kind, LayerKind::Plain),
        "Δt = 1 with −h gives a plain layer"
    );
    let kinds: Vec<String> = network.layers.iter().map(|l| l.kind.short()).collect();
    assert_eq!(
        kinds,
        [
            "plain",
            "dense 64→64",
            "sequence input",
            "dense 28→64",
            "tanh",
            "readout y",
            "dense 64→10"
        ]
    );
}

#[test]
fn per_step_weights_untie_the_layers() {
    let source = format!(
        "{MNIST}grid k index 32\nfield u(k)\nparam W(t)[32, 32] ~ glorot\nparam Wout[10, 32] ~ glorot\n\
         equation deep: dt(u) = tanh(W @ u)\ninitial u = 0\nreadout y = Wout @ u\n\
         train deep on mnist using euler(steps = 5) loss cross_entropy(y, label)\n"
    );
    let network = &recognize(&model(&source))[0];
    assert_eq!(network.depth, Depth::Untied);
    assert_eq!(network.parameters, 5 * 32 * 32 + 10 * 32);
}

#[test]
fn table_lists_layers_with_sources() {
    let mut architectures = recognize(&example("heat1d.npde"));
    for layer in &mut architectures[0].layers {
        layer.line = Some(9);
    }
    let table = render_table(&architectures[0], |layer| {
        layer
            .line
            .map_or_else(String::new, |line| format!("heat1d.npde:{line}"))
    });
    assert!(table.contains("conv 3 1→1 fixed"), "{table}");
    assert!(table.contains("heat1d.npde:9"), "{table}");
    assert!(
        table.lines().last().unwrap().contains("2500 × residual"),
        "{table}"
    );
}

#[test]
fn mnist_examples_name_their_architectures() {
    let mlp = &recognize(&example("mnist_mlp.npde"))[0];
    let kinds: Vec<String> = mlp.layers.iter().map(|l| l.kind.short()).collect();
    assert!(
        matches!(mlp.layers[0].kind, LayerKind::Residual { .. }),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "dense 784→784").count(),
        1,
        "swish repeats W @ u but it is one layer: {kinds:?}"
    );

    let cnn = &recognize(&example("mnist_cnn.npde"))[0];
    assert!(
        cnn.layers.iter().any(|l| matches!(
            &l.kind,
            LayerKind::Convolution {
                learnable: true,
                in_channels: 8,
                out_channels: 8,
                ..
            }
        )),
        "{:?}",
        cnn.layers
    );

    let rnn = &recognize(&example("mnist_rnn.npde"))[0];
    assert_eq!(rnn.depth, Depth::Recurrent);
    assert!(rnn
        .layers
        .iter()
        .any(|l| l.kind == LayerKind::SequenceInput));
}

#[test]
fn pool_and_upsample_are_resampling_layers() {
    let digits = &recognize(&example("digits_pool.npde"))[0];
    let kinds: Vec<String> = digits.layers.iter().map(|l| l.kind.short()).collect();
    assert_eq!(
        kinds,
        [
            "residual",
            "conv 3×3 8→8",
            "tanh",
            "avg pool 2×2",
            "upsample 2×2 nearest",
            "readout y",
            "avg pool 2×2",
            "dense 128→10"
        ]
    );
    let LayerKind::Pool {
        factor,
        input_shape,
        output_shape,
    } = &digits.layers[3].kind
    else {
        panic!("{:?}", digits.layers[3])
    };
    assert_eq!(*factor, 2);
    assert_eq!(input_shape, &[8, 8, 8]);
    assert_eq!(output_shape, &[8, 4, 4]);
    assert_eq!(digits.layers[3].input, "8×8×8");
    assert_eq!(digits.layers[3].output, "8×4×4");
    assert_eq!(digits.layers[4].input, "8×4×4");
    assert_eq!(digits.layers[4].output, "8×8×8");
    assert_eq!(digits.layers[6].output, "8×4×4");
    assert_eq!(digits.layers[3].term, "a * (upsample(pool(u, 2), 2) - u)");
    // Pooling owns no weights: the bias of the readout belongs to its dense layer.
    assert_eq!(digits.layers[6].parameters, 0);
    assert_eq!(digits.layers[7].parameters, 1290);
    assert_eq!(
        digits.summary,
        "4 × residual(conv 3×3 8→8 + tanh + avg pool 2×2 + upsample 2×2 nearest), one set of weights per step → readout y: avg pool 2×2 + dense 128→10"
    );
    let table = render_table(digits, |_| "digits_pool.npde".to_string());
    assert!(table.contains("8×8×8 → 8×4×4"), "{table}");
}

#[test]
fn pooling_a_line_twice_composes_the_factors() {
    let line = &recognize(&model(
        "grid k index 16
field u(k)
equation relax: dt(u) = upsample(pool(pool(u, 2), 2), 4) - u
initial u = k
solve relax using euler(dt = 0.1) until 1
",
    ))[0];
    let shapes: Vec<(String, String, String)> = line
        .layers
        .iter()
        .skip(1)
        .map(|l| (l.kind.short(), l.input.clone(), l.output.clone()))
        .collect();
    let expected = [
        ("avg pool 2", "1×16", "1×8"),
        ("avg pool 2", "1×8", "1×4"),
        ("upsample 4 nearest", "1×4", "1×16"),
    ]
    .map(|(k, i, o)| (k.to_string(), i.to_string(), o.to_string()));
    assert_eq!(shapes[..3], expected);
}
