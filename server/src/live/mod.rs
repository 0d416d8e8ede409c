//! Live viewers: the hub that tells them about commits, and their read-only socket.

pub mod changes;
pub mod hub;
pub mod relay;
pub mod viewer;

pub use hub::Hub;
