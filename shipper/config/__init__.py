"""Configuration: Fluent Bit's classic and YAML formats -> one neutral structure -> options."""
