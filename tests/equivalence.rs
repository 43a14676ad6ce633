//! The same numbers everywhere: a few training steps of MLP1 and MLP2, with the sparse and the dense
//! first layer, give bit-identical losses, parameters and velocities on every backend and every
//! thread count (1, 2, 3, 8), against the portable backend on one thread. A backend this CPU cannot
//! run is reported as ignored.

use libtest_mimic::{Arguments, Failed, Trial};
use mlp::batch::{InputBatch, InputPath};
use mlp::data::Dataset;
use mlp::kernels::Backend;
use mlp::network::{Network, UpdatePlan};
use mlp::optim::Sgd;
use mlp::{Loss, NetSpec};
use rand::SeedableRng;

mod common;

const MLP1: &str = "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01";
const MLP2: &str = "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2; \
                    linear,fc3,256,10,0.01";

/// Every loss and every parameter's value and velocity, as bits.
type Run = (Vec<u64>, Vec<Vec<u32>>);

fn run(data: &Dataset, spec: &str, path: InputPath, backend: Backend, threads: usize) -> Run {
    let pool = mlp::kernels::Pool::new(threads).unwrap();
    pool.install(|| {
        let spec: NetSpec = spec.parse().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut net = Network::from_spec(&spec, &mut rng, 101);
        net.set_backend(backend);
        let mut batch = InputBatch::new(101, 784, path);
        let plan = UpdatePlan {
            sgd: Sgd {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            allow_nan: false,
            keep_gradients: false,
        };
        let order: Vec<u32> = (0..600u32).map(|i| i * 7 % 600).collect();
        let mut losses = Vec::new();
        for indices in order.chunks(101).take(4) {
            batch.fill(&data.train, indices);
            let (stats, _) = net.train_step(&batch, Loss::SoftmaxCe, &plan, || (), &mut ());
            losses.push(stats.loss_sum.to_bits());
        }
        let bits = net
            .params()
            .flat_map(|p| [&p.value, &p.velocity])
            .map(|a| a.iter().map(|v| v.to_bits()).collect())
            .collect();
        (losses, bits)
    })
}

fn compare(spec: &str, path: InputPath, backend: Backend) -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    common::write_mnist_subset(dir.path(), 600);
    let data = Dataset::load(dir.path()).unwrap();
    let reference = run(&data, spec, path, Backend::Portable, 1);
    for threads in [1, 2, 3, 8] {
        let got = run(&data, spec, path, backend, threads);
        if got.0 != reference.0 {
            return Err(
                format!("{backend}, {threads} thread(s): losses differ from portable's").into(),
            );
        }
        if let Some(p) = (0..got.1.len()).find(|&p| got.1[p] != reference.1[p]) {
            return Err(format!(
                "{backend}, {threads} thread(s): array {p} differs from portable's"
            )
            .into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for backend in Backend::ALL {
        for (name, spec) in [("mlp1", MLP1), ("mlp2", MLP2)] {
            for path in [InputPath::Sparse, InputPath::Dense] {
                let title =
                    format!("{backend}_{name}_{path:?}_matches_portable_on_every_thread_count")
                        .to_lowercase();
                trials.push(
                    Trial::test(title, move || compare(spec, path, backend))
                        .with_ignored_flag(!backend.available()),
                );
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
