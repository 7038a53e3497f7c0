//! Everything that listens on a port and reads bytes from the network: the operator's HTTP
//! endpoints (`http`), the authentication and authorisation in front of them (`auth`), and the
//! audit webhook sink (`audit`).

pub mod audit;
pub mod auth;
pub mod http;
