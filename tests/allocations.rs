//! A training step allocates nothing once its buffers exist, MLP1's and MLP2's, sparse or dense, on
//! every backend this CPU runs. Counted by the binary's own allocator, installed here too, on the one
//! thread of a one-thread pool, and for that thread alone (the test harness allocates when a test runs
//! long, as under an emulator).

use mlp::alloc::{CacheAligned, allocations};
use mlp::batch::{InputBatch, InputPath};
use mlp::data::Dataset;
use mlp::kernels::Backend;
use mlp::network::{Network, UpdatePlan};
use mlp::optim::Sgd;
use mlp::{Loss, NetSpec};
use rand::SeedableRng;

#[global_allocator]
static ALLOCATOR: CacheAligned = CacheAligned;

mod common;

/// Allocations over 50 training steps of `spec` on MNIST, after 20 steps to warm up.
fn count(data: &Dataset, spec: &str, path: InputPath, backend: Backend) -> usize {
    let spec: NetSpec = spec.parse().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut network = Network::from_spec(&spec, &mut rng, 100);
    network.set_backend(backend);
    let mut batch = InputBatch::new(100, 784, path);
    let plan = UpdatePlan {
        sgd: Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
        },
        allow_nan: false,
        keep_gradients: false,
    };
    // Batches in the order of a shuffled epoch: image i * 7919 % 60000 (7919 is prime to 60000).
    let order: Vec<u32> = (0..60_000u32).map(|i| i * 7919 % 60_000).collect();
    let mut start = 0;
    for (step, indices) in order.chunks(100).take(70).enumerate() {
        if step == 20 {
            start = allocations();
        }
        batch.fill(&data.train, indices);
        network.train_step(&batch, Loss::SoftmaxCe, &plan, || (), &mut ());
    }
    allocations() - start
}

#[test]
fn a_training_step_allocates_nothing() {
    let pool = mlp::kernels::Pool::new(1).unwrap();
    let data = Dataset::load(&common::mnist_dir()).unwrap();
    let mlp1 = "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01";
    let mlp2 = "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2; \
                linear,fc3,256,10,0.01";
    for (spec, path) in [
        (mlp1, InputPath::Sparse),
        (mlp1, InputPath::Dense),
        (mlp2, InputPath::Sparse),
        (mlp2, InputPath::Dense),
    ] {
        let backend = mlp::kernels::current();
        let allocated = pool.install(|| count(&data, spec, path, backend));
        assert_eq!(allocated, 0, "{spec} ({path:?}, {backend}): allocations");
    }
}
