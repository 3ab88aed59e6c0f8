//! HTTP/1.1 wire format: request heads in, response heads out. Pure: no sockets, no files.

pub mod accept_encoding;
pub mod body;
pub mod chunked;
pub mod coding;
pub mod conditional;
pub mod date;
pub mod host;
pub mod range;
pub mod request;
pub mod response;
pub mod status;
pub mod upstream;

pub use request::{Method, ParseError, Request};
pub use status::Status;
