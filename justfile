# Everyday recipes. `.ci/run` and the README use plain commands, so `just` is optional.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Format the whole workspace.
fmt:
    cargo fmt --all

# Check formatting and lint everything, warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The whole Rust test suite (the README's test command).
test:
    cargo test --workspace

# Criterion benches of the hot paths (see docs/performance.md).
bench:
    cargo bench --workspace

# Real clients (openai SDK, AutoGen) through a fresh gateway; venv at .venv.
e2e:
    cargo build --bin palisade
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --requirement tests/e2e/requirements.txt
    PALISADE_BIN="${CARGO_TARGET_DIR:-target}/debug/palisade" .venv/bin/python -m pytest tests/e2e -q

# Everything CI runs, exactly as CI runs it.
ci:
    bash .ci/run

# The gateway quickstart on 127.0.0.1:4100 (mock provider unless OPENAI_API_KEY is set).
run:
    cargo run --release --bin palisade -- gateway run --policy-config policy-packs/quickstart.yaml
