//! Records the git commit and build date for `authserver version`. Re-runs only
//! when HEAD moves, so ordinary rebuilds do not recompile the crate.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = std::env::var("AUTHPLANE_GIT_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let date = std::env::var("AUTHPLANE_BUILD_DATE")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%cI", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AUTHPLANE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=AUTHPLANE_BUILD_DATE={date}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    println!("cargo:rerun-if-env-changed=AUTHPLANE_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=AUTHPLANE_BUILD_DATE");
}
