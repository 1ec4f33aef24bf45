//! Raw serde types of the config file.
