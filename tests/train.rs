//! Training through the library API on small data: it learns, it is deterministic, and the gradients of
//! a whole network agree with finite differences.

mod common;

use mlp::batch::InputBatch;
use mlp::data::Dataset;
use mlp::layers::Param;
use mlp::loss::Loss;
use mlp::network::Network;
use mlp::optim::Sgd;
use mlp::spec::NetSpec;
use mlp::train::{Observer, Record, Settings, train};
use ndarray::Array2;
use rand::SeedableRng;

#[derive(Default)]
struct Recorder {
    steps: Vec<Record>,
    tests: Vec<Record>,
}

impl Observer for Recorder {
    fn step(&mut self, record: &Record) -> mlp::Result<()> {
        self.steps.push(record.clone());
        Ok(())
    }
    fn tested(&mut self, record: &Record) -> mlp::Result<()> {
        self.tests.push(record.clone());
        Ok(())
    }
}

fn toy() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    common::write_toy_dataset(dir.path(), 250, 80, 4);
    let data = Dataset::load(dir.path()).unwrap();
    (dir, data)
}

fn settings(loss: Loss, seed: u64) -> Settings {
    Settings {
        loss,
        sgd: Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
        },
        batch_size: 100,
        max_epoch: 5,
        test_epoch: 2,
        seed,
        input_path: mlp::batch::InputPath::Auto,
        allow_nan: false,
        grad_norm_every: None,
    }
}

const TOY_SPEC: &str = "linear,fc1,16,12,0.1; relu,r1; linear,fc2,12,4,0.1";

#[test]
fn learns_the_toy_problem_with_either_loss() {
    let (_dir, data) = toy();
    for (loss, spec) in [
        (Loss::SoftmaxCe, TOY_SPEC),
        (
            Loss::Mse,
            "linear,fc1,16,12,0.1; sigmoid,s1; linear,fc2,12,4,0.1",
        ),
    ] {
        let spec: NetSpec = spec.parse().unwrap();
        let mut s = settings(loss, 1);
        s.max_epoch = 30;
        s.sgd.lr = if loss == Loss::Mse { 0.5 } else { 0.1 };
        let outcome = train(&spec, &s, &data, &mut Recorder::default(), None).unwrap();
        assert!(
            outcome.test_acc > 0.9,
            "{loss:?}: test accuracy {}",
            outcome.test_acc
        );
    }
}

#[test]
fn records_every_iteration_and_the_scheduled_tests() {
    let (_dir, data) = toy();
    let spec: NetSpec = TOY_SPEC.parse().unwrap();
    let mut rec = Recorder::default();
    let outcome = train(&spec, &settings(Loss::SoftmaxCe, 1), &data, &mut rec, None).unwrap();
    // 250 samples in batches of 100: 3 iterations per epoch, the last of 50 samples.
    assert_eq!(rec.steps.len(), 15);
    assert_eq!(
        rec.steps.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=15).collect::<Vec<_>>()
    );
    assert!(rec.steps.iter().all(|r| r.iters_per_epoch == 3));
    assert_eq!((rec.steps[5].epoch, rec.steps[5].iter), (2, 3));
    // test_epoch 2 over 5 epochs: after epochs 2, 4 and the last.
    assert_eq!(
        rec.tests
            .iter()
            .map(|t| (t.epoch, t.step))
            .collect::<Vec<_>>(),
        vec![(2, 6), (4, 12), (5, 15)]
    );
    let last_epoch = &rec.steps[12..];
    let mean_loss = last_epoch.iter().map(|r| r.loss).sum::<f64>() / 3.0;
    assert_eq!(outcome.train_loss, mean_loss);
    assert_eq!(outcome.test_loss, rec.tests[2].loss);
    assert_eq!(outcome.steps, 15);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_does_not() {
    let (_dir, data) = toy();
    let spec: NetSpec = TOY_SPEC.parse().unwrap();
    let run = |seed| {
        let mut rec = Recorder::default();
        train(
            &spec,
            &settings(Loss::SoftmaxCe, seed),
            &data,
            &mut rec,
            None,
        )
        .unwrap();
        rec.steps
            .iter()
            .map(|r| (r.loss, r.acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

/// The whole chain (Linear, activations, loss) against central differences of the batch loss, in f32
/// with tolerances a wrong formula or a wrong hand-off between layers cannot meet.
#[test]
fn network_gradients_match_finite_differences() {
    let specs = [
        (
            Loss::SoftmaxCe,
            "linear,a,5,4,0.5; relu,r; linear,b,4,3,0.5; sigmoid,s; linear,c,3,3,0.5",
        ),
        (
            Loss::Mse,
            "linear,a,5,4,0.5; sigmoid,s; linear,b,4,3,0.5; relu,r",
        ),
    ];
    let x = Array2::from_shape_fn((6, 5), |(i, j)| ((i * 3 + j * 5) % 7) as f32 / 7.0 - 0.4);
    let labels = [0u8, 1, 2, 2, 1, 0];
    for (loss, text) in specs {
        let spec: NetSpec = text.parse().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut net = Network::from_spec(&spec, &mut rng, 6);
        let batch = InputBatch::from_dense(x.clone(), labels.to_vec());
        net.compute_gradients(&batch, loss);
        let analytic: Vec<Param> = net.params().cloned().collect();
        let mut checked = 0;
        let largest = analytic
            .iter()
            .flat_map(|p| p.grad.iter())
            .fold(0f32, |m, g| m.max(g.abs()));
        assert!(
            largest > 1e-2,
            "gradients too small for the check to mean anything: {largest}"
        );
        for (p, param) in analytic.iter().enumerate() {
            for idx in 0..param.value.len() {
                let eps = 1e-2f32;
                let mut loss_at = |delta: f32| {
                    // Padded rows: the idx-th element in row-major order, not of the storage.
                    *net_param_mut(&mut net, p).iter_mut().nth(idx).unwrap() += delta;
                    let l = net.evaluate(&batch, loss).mean_loss();
                    *net_param_mut(&mut net, p).iter_mut().nth(idx).unwrap() -= delta;
                    l
                };
                let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
                let got = *param.grad.iter().nth(idx).unwrap() as f64;
                // Relative 2e-3, plus the f32 rounding of a loss near 1 divided by 2·eps (about 1e-5).
                let tol = 2e-3 * got.abs().max(numeric.abs()) + 1e-5;
                assert!(
                    (got - numeric).abs() < tol,
                    "{loss:?} {}[{idx}]: analytic {got} vs numeric {numeric}",
                    param.name
                );
                checked += 1;
            }
        }
        assert!(checked > 30);
    }
}

fn net_param_mut(net: &mut Network, index: usize) -> &mut Array2<f32> {
    &mut net.params_mut().nth(index).unwrap().value
}

/// The sparse first layer computes the same thing as the dense one: on real MNIST images the two paths
/// give the same trajectory to float rounding.
#[test]
fn sparse_and_dense_input_paths_agree() {
    use mlp::batch::InputPath;
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist_subset(dir.path(), 2000);
    let data = Dataset::load(dir.path()).unwrap();
    let spec: NetSpec = "linear,fc1,784,64,0.01; relu,r; linear,fc2,64,10,0.01"
        .parse()
        .unwrap();
    let run = |input_path| {
        let mut s = settings(Loss::SoftmaxCe, 3);
        s.sgd.lr = 0.01;
        s.max_epoch = 2;
        s.input_path = input_path;
        let mut rec = Recorder::default();
        let outcome = train(&spec, &s, &data, &mut rec, None).unwrap();
        (rec.steps, outcome)
    };
    let (dense, dense_outcome) = run(InputPath::Dense);
    let (sparse, sparse_outcome) = run(InputPath::Sparse);
    assert_eq!(dense.len(), 40);
    for (d, s) in dense.iter().zip(&sparse) {
        assert!(
            (d.loss - s.loss).abs() < 1e-4 * d.loss.max(1.0),
            "step {}: {} vs {}",
            d.step,
            d.loss,
            s.loss
        );
    }
    assert!((dense_outcome.test_loss - sparse_outcome.test_loss).abs() < 1e-4);
    assert!((dense_outcome.test_acc - sparse_outcome.test_acc).abs() <= 0.002);
}

/// `Network::train_step` updates each weight from its gradient part by part, while the part is in
/// cache: the same parameters, velocities and gradients, to the bit, as computing every gradient and
/// then updating, on every thread count, for a batch that ends on an odd row; a non-finite loss
/// updates nothing unless NaNs are allowed.
#[test]
fn the_fused_update_equals_gradients_then_update() {
    use mlp::batch::InputPath;
    use mlp::network::UpdatePlan;
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist_subset(dir.path(), 1000);
    let data = Dataset::load(dir.path()).unwrap();
    let spec: NetSpec = "linear,fc1,784,300,0.01; relu,r; linear,fc2,300,10,0.01"
        .parse()
        .unwrap();
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let new_net = || {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        Network::from_spec(&spec, &mut rng, 101)
    };
    let order: Vec<u32> = (0..1000u32).map(|i| i * 7 % 1000).collect();
    // Five steps; the last one's gradients are returned.
    // `fused`: None for the plain passes, else whether the step keeps its gradients.
    let run = |fused: Option<bool>| {
        let mut net = new_net();
        let mut batch = InputBatch::new(101, 784, InputPath::Sparse);
        for indices in order.chunks(101).take(5) {
            batch.fill(&data.train, indices);
            if let Some(keep_gradients) = fused {
                let plan = UpdatePlan {
                    sgd,
                    allow_nan: false,
                    keep_gradients,
                };
                let (_, updated) = net.train_step(&batch, Loss::SoftmaxCe, &plan, || (), &mut ());
                assert!(updated);
            } else {
                net.compute_gradients(&batch, Loss::SoftmaxCe);
                net.update(&sgd);
            }
        }
        let grads: Vec<Array2<f32>> = net.params().map(|p| p.grad.clone()).collect();
        // A step that does not keep them never writes the first layer's (sparse) gradient.
        let written = grads[0].iter().any(|&g| g != 0.0);
        assert_eq!(written, fused != Some(false));
        (net, grads)
    };
    let runs = common::on_every_thread_count(|| (run(None), run(Some(true)), run(Some(false))));
    for (threads, (plain, kept, fused)) in runs {
        assert_eq!(plain.1, kept.1, "{threads}: gradients of a kept step");
        for other in [&kept.0, &fused.0] {
            for (a, b) in plain.0.params().zip(other.params()) {
                assert!(a.value == b.value, "{threads}: {}", a.name);
                assert!(a.velocity == b.velocity, "{threads}: {} velocity", a.name);
            }
        }
    }
    // A NaN in the last layer's weight makes the loss NaN: nothing moves, unless allowed.
    let mut batch = InputBatch::new(101, 784, InputPath::Sparse);
    batch.fill(&data.train, &order[..101]);
    for allow_nan in [false, true] {
        let mut net = new_net();
        net.params_mut().nth(2).unwrap().value[[3, 0]] = f32::NAN;
        let before: Vec<Array2<f32>> = net.params().map(|p| p.value.clone()).collect();
        let plan = UpdatePlan {
            sgd,
            allow_nan,
            keep_gradients: false,
        };
        let (stats, updated) = net.train_step(&batch, Loss::SoftmaxCe, &plan, || (), &mut ());
        assert!(stats.loss_sum.is_nan());
        assert_eq!(updated, allow_nan);
        let after: Vec<Array2<f32>> = net.params().map(|p| p.value.clone()).collect();
        let unchanged = before
            .iter()
            .zip(&after)
            .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(unchanged, !allow_nan);
    }
}

/// A layer that hides what it is from the network, so that the plan runs its own passes and fuses
/// nothing.
struct Opaque(Box<dyn mlp::layers::Layer>);

impl mlp::layers::Layer for Opaque {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn out_width(&self, inp: usize) -> usize {
        self.0.out_width(inp)
    }
    fn forward(&mut self, inp: ndarray::ArrayView2<f32>, out: ndarray::ArrayViewMut2<f32>) {
        self.0.forward(inp, out)
    }
    fn backward(
        &mut self,
        inp: ndarray::ArrayView2<f32>,
        out: ndarray::ArrayView2<f32>,
        dout: ndarray::ArrayView2<f32>,
        dinp: Option<ndarray::ArrayViewMut2<f32>>,
    ) {
        self.0.backward(inp, out, dout, dinp)
    }
    fn params(&self) -> &[Param] {
        self.0.params()
    }
    fn params_mut(&mut self) -> &mut [Param] {
        self.0.params_mut()
    }
}

/// The plan's folded activations (applied as the layer before finishes each block of its output, the
/// derivative multiplied into each block of the input gradient of the layer after) and fused updates
/// give the same losses, parameters and velocities, to the bit, as every layer's own plain passes:
/// ReLU, sigmoid, tanh and leaky ReLU, on every thread count, with layers large enough to be split
/// between the threads. (The plain layers read dense batches; the sparse path sums `S W` and the
/// offset's column sums apart, and is checked against the dense one to rounding above.)
#[test]
fn folded_activations_and_fused_updates_change_nothing() {
    use mlp::batch::InputPath;
    use mlp::network::UpdatePlan;
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist_subset(dir.path(), 600);
    let data = Dataset::load(dir.path()).unwrap();
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let order: Vec<u32> = (0..600u32).map(|i| i * 7 % 600).collect();
    let specs = [
        "linear,fc1,784,500,0.01; relu,r1; linear,fc2,500,256,0.01; relu,r2; linear,fc3,256,10,0.01",
        "linear,fc1,784,300,0.05; sigmoid,s1; linear,fc2,300,10,0.05; sigmoid,s2",
        "linear,fc1,784,200,0.05; tanh,t1; linear,fc2,200,64,0.05; leaky_relu,l1,0.1; linear,fc3,64,10,0.05",
    ];
    for spec in specs {
        let spec: NetSpec = spec.parse().unwrap();
        let run = |opaque: bool| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            let mut net = if opaque {
                let layers = mlp::layers::build(&spec, &mut rng)
                    .into_iter()
                    .map(|l| Box::new(Opaque(l)) as Box<dyn mlp::layers::Layer>)
                    .collect();
                Network::new(layers, 784, 101)
            } else {
                Network::from_spec(&spec, &mut rng, 101)
            };
            let mut batch = InputBatch::new(101, 784, InputPath::Dense);
            let plan = UpdatePlan {
                sgd,
                allow_nan: false,
                keep_gradients: false,
            };
            let mut losses = Vec::new();
            for indices in order.chunks(101).take(4) {
                batch.fill(&data.train, indices);
                let (stats, _) = net.train_step(&batch, Loss::SoftmaxCe, &plan, || (), &mut ());
                losses.push(stats.loss_sum.to_bits());
            }
            let params: Vec<(Array2<f32>, Array2<f32>)> = net
                .params()
                .map(|p| (p.value.clone(), p.velocity.clone()))
                .collect();
            (losses, params)
        };
        let runs = common::on_every_thread_count(|| (run(true), run(false)));
        for (threads, (plain, fused)) in runs {
            let case = format!("{spec}, {threads}");
            assert_eq!(plain.0, fused.0, "{case}: losses");
            for (i, (a, b)) in plain.1.iter().zip(&fused.1).enumerate() {
                assert!(a.0 == b.0 && a.1 == b.1, "{case}: parameter {i}");
            }
        }
    }
}
