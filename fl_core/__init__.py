"""fl_core: plain FedAvg that uses secagg only through one aggregator interface."""
