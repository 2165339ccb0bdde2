//! Policy packs: YAML loaded, validated (every error, with file, line, column and key) and
//! compiled once into an immutable [`CompiledPack`]; the chain and conditional rules are
//! evaluated on each exchange; [`PolicyLayer`] puts that in a tower stack.

mod model;

pub use model::*;
