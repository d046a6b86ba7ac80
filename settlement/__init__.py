"""Settlement: allocation of shared kWh, a double-entry hash-chained ledger, pricing, statements."""
