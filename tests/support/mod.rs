//! Shared fixtures for the black-box tests. Each test crate uses a different subset of them.
#![allow(dead_code)]

pub mod kube;
pub mod operator;
pub mod oss;
pub mod policy;

/// A spawned process, killed when the test ends, whatever happens.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
