//! Shared fixtures for the black-box tests. Each test crate uses a different subset of them.
#![allow(dead_code)]

pub mod kube;
pub mod operator;
pub mod oss;
