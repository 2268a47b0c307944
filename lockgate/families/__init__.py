"""Model families. `tables` holds what table classification and regression
share: column roles, the data contract and the encoding of raw rows."""
