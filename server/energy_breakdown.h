// Energy by component, shared by the device model, the ledger and the metrics.
#pragma once

namespace fedsim {

// Energy by component: the one breakdown used from a round's cost through
// the ledger to the metrics columns (compute_j, tx_j, rx_j, idle_j).
struct EnergyBreakdown {
  double compute_j = 0.0;
  double tx_j = 0.0;
  double rx_j = 0.0;
  double idle_j = 0.0;

  double total_j() const { return compute_j + tx_j + rx_j + idle_j; }
  EnergyBreakdown& operator+=(const EnergyBreakdown& o) {
    compute_j += o.compute_j;
    tx_j += o.tx_j;
    rx_j += o.rx_j;
    idle_j += o.idle_j;
    return *this;
  }
};

}  // namespace fedsim
