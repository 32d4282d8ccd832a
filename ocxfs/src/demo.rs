//! The demo account: a fake One Codex started inside the mounting process,
//! present only in builds with the `demo` feature (the default).

use crate::api::credentials::Credentials;

/// What a build without the `demo` feature says when asked for the demo
/// account or the emulator.
pub const NOT_BUILT: &str = "this ocxfs was built without the `demo` feature: it has no demo \
     account and no emulator (build with default features for `--demo` and `ocxfs emulator`)";

/// A running demo account.
#[cfg(feature = "demo")]
pub struct Demo(ocxfs_emulator::Emulator);

/// A running demo account (none can exist in this build).
#[cfg(not(feature = "demo"))]
pub enum Demo {}

#[cfg(feature = "demo")]
impl Demo {
    pub async fn start() -> Result<Demo, String> {
        ocxfs_emulator::Emulator::start(ocxfs_emulator::EmulatorArgs::demo())
            .await
            .map(Demo)
            .map_err(|e| format!("demo emulator: {e}"))
    }

    pub fn api_base(&self) -> &str {
        self.0.base_url()
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::ApiKey(crate::api::credentials::Secret::new(
            ocxfs_emulator::DEMO_API_KEY,
        ))
    }

    pub async fn shutdown(self) {
        self.0.shutdown().await
    }
}

#[cfg(not(feature = "demo"))]
impl Demo {
    pub async fn start() -> Result<Demo, String> {
        Err(NOT_BUILT.to_owned())
    }

    pub fn api_base(&self) -> &str {
        match *self {}
    }

    pub fn credentials(&self) -> Credentials {
        match *self {}
    }

    pub async fn shutdown(self) {
        match self {}
    }
}
