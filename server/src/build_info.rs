//! Version, git commit and build date baked in by `build.rs`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = env!("AUTHPLANE_GIT_COMMIT");
pub const BUILD_DATE: &str = env!("AUTHPLANE_BUILD_DATE");
