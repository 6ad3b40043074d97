//! ferry's core library: every piece of domain logic lives here, one module per concept.
//! The `ferry` binary and the Lambda functions only parse input and wire these together.

pub mod auth;
pub mod copy;
pub mod env;
pub mod files;
pub mod input;
pub mod job;
pub mod plan;
pub mod queue;
pub mod reference;
pub mod registry;
pub mod report;
pub mod rules;
pub mod webhook;
pub mod worker;
