//! The audit chain: one event per exchange, hash-chained, stored durably, verifiable.
