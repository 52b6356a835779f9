//! The Wasm plugin runtime.
//!
//! One wasmtime [`Engine`](wasmtime::Engine) per process, configured once in
//! [`engine`]: component model, pooling allocator, epoch interruption. Each
//! extension point is one module holding its `bindgen!` world and the host
//! side of its imports ([`routing`]). Loaded guests live in the [`registry`],
//! which swaps versions atomically on reload.
//!
//! Failure policy: a guest that traps, runs past its deadline, hits its memory
//! cap, returns a nonsense result or cannot be instantiated never takes the
//! host down. The call is logged with the guest's name and world, counted in
//! `softswitch_guest_failures_total{kind=...}`, its instance is discarded
//! (never reused), and the extension point's fallback answers instead.

pub mod capabilities;
pub mod cases;
pub mod engine;
pub mod hot;
pub mod inspect;
pub mod ivr;
pub mod probation;
pub mod push;
pub mod registry;
pub mod routing;
pub mod sms;
mod state;

use std::path::PathBuf;

pub use engine::{Plugins, PluginsOptions};
pub use registry::{GuestInfo, GuestRegistry};

/// Why a guest call did not produce a usable result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, out-of-bounds access ...).
    Trap,
    /// The guest ran past its deadline and was interrupted.
    Timeout,
    /// The guest tried to grow its memory past the cap.
    Memory,
    /// The guest returned a value the host refuses (e.g. a SIP code of 999).
    InvalidResult,
    /// A fresh instance could not be created.
    Instantiate,
    /// A directory look-up the guest made failed (database down).
    Directory,
    /// The guest asked for a look-up its capabilities do not grant.
    Denied,
    /// No version of the guest is loaded.
    Unavailable,
    /// Every instance slot stayed in use for `plugins.instance_wait_ms`:
    /// more guest calls in progress than `plugins.max_instances`.
    Overloaded,
}

impl FailureKind {
    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::InvalidResult => "invalid-result",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Directory => "directory",
            FailureKind::Denied => "denied",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Overloaded => "overloaded",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed guest call, with the detail for the log.
#[derive(Debug, thiserror::Error)]
#[error("guest {guest} ({world}) failed: {kind}: {detail}")]
pub struct GuestFailure {
    pub guest: String,
    pub world: &'static str,
    pub kind: FailureKind,
    pub detail: String,
}

/// Errors loading or checking a guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read guest {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Compile { path: PathBuf, message: String },
    /// The component does not implement the world it is configured for.
    #[error("{path} does not implement {expected}: {message}")]
    WrongWorld {
        path: PathBuf,
        expected: &'static str,
        message: String,
    },
    /// The component loaded but its smoke call failed.
    #[error("{path} failed its smoke call: {failure}")]
    Smoke {
        path: PathBuf,
        failure: GuestFailure,
    },
    /// The component loaded but failed the cases its config names.
    #[error("{path} failed its cases: {message}")]
    Canary { path: PathBuf, message: String },
    #[error("{path} imports {import}, which its capabilities do not grant (imports = [{granted}])")]
    NotGranted {
        path: PathBuf,
        import: String,
        granted: String,
    },
    /// No guest by that name is configured.
    #[error("no guest named {0:?} is configured")]
    UnknownGuest(String),
    /// The engine could not be set up.
    #[error("plugin engine: {0}")]
    Engine(String),
}
