//! The report's Table 3 ("Training / Test loss / accuracy after 30000 iterations"), for comparison.

/// The epochs behind every row: 30000 iterations of batches of 100 over 60000 images.
pub const EPOCHS: usize = 50;

/// One network's row: losses as printed, accuracies as fractions, training time in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportRow {
    pub name: &'static str,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub train_time_s: f64,
}

const fn row(name: &'static str, values: [f64; 5]) -> ReportRow {
    let [train_loss, train_acc, test_loss, test_acc, train_time_s] = values;
    ReportRow {
        name,
        train_loss,
        train_acc: train_acc / 100.0,
        test_loss,
        test_acc: test_acc / 100.0,
        train_time_s,
    }
}

/// In the report's order. `MLP2_Sig_Sig_MSE` is the run the report marks with `*` (it failed to learn).
pub const TABLE_3: [ReportRow; 15] = [
    row("AffNet_MSE", [0.21670, 83.178, 0.21354, 84.110, 20.405]),
    row("AffNet_CE", [0.27423, 92.313, 0.27873, 92.270, 22.550]),
    row("MLP1_ReLU_CE", [0.04095, 99.102, 0.06716, 98.050, 111.166]),
    row(
        "MLP1_Sigmoid_CE",
        [0.15963, 95.775, 0.15917, 95.610, 131.832],
    ),
    row(
        "MLP1_Sigmoid_MSE",
        [0.07384, 93.860, 0.07351, 94.200, 131.916],
    ),
    row(
        "MLP1_ReLU_ReLU_MSE",
        [0.01790, 98.963, 0.02401, 98.090, 106.118],
    ),
    row(
        "MLP1_ReLU_Sig_MSE",
        [0.04090, 96.258, 0.04127, 96.170, 112.154],
    ),
    row(
        "MLP1_Sig_Sig_MSE",
        [0.09750, 90.537, 0.09337, 90.900, 128.236],
    ),
    row("MLP2_ReLU_CE", [0.01714, 99.725, 0.05685, 98.160, 247.885]),
    row("MLP2_Sig_CE", [0.17617, 95.008, 0.18310, 94.730, 298.611]),
    row("MLP2_Sig_MSE", [0.09550, 91.577, 0.09118, 91.900, 288.587]),
    row(
        "MLP2_ReLU_ReLU_MSE",
        [0.01250, 99.275, 0.01878, 98.280, 251.921],
    ),
    row(
        "MLP2_ReLU_Sig_MSE",
        [0.02632, 97.590, 0.02854, 97.160, 236.015],
    ),
    row(
        "MLP2_Sig_Sig_MSE",
        [0.44994, 11.138, 0.44985, 11.350, 296.137],
    ),
    row(
        "MLP2_Sig_Sig_MSE_ENH",
        [0.08873, 91.778, 0.08580, 92.110, 294.468],
    ),
];

/// The report's row for a network named as in Table 3.
pub fn lookup(name: &str) -> Option<&'static ReportRow> {
    TABLE_3.iter().find(|r| r.name == name)
}
