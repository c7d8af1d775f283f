"""A Flower app whose FedAvg rounds run through secagg: five lines differ from plain FedAvg."""
