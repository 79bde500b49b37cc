//! Model-based property tests of the relay cores.
