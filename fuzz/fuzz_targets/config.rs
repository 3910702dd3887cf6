//! The config loader: YAML text plus the `AUTHPLANE_*` environment overlay,
//! then the cross-field rules (`Config::load`).
//!
//! Properties: an accepted config, written back as YAML (what the operator
//! does), loads again and writes the same text (round trip, canonical form);
//! the loader never panics on any text or variable.
#![no_main]

use authplane_core::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Input: YAML, then after a line `--env--` one `NAME=value` per line.
    let (yaml, env) = text.split_once("\n--env--\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> =
        env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let Ok(loaded) = Config::load(Some(("fuzz.yaml", yaml)), env) else { return };
    let written = serde_saphyr::to_string(&loaded.config).expect("an accepted config serialises");
    let again = match Config::load(Some(("written.yaml", &written)), Vec::new()) {
        Ok(l) => l,
        Err(e) => panic!("the written form of an accepted config is refused: {e}\n{written}"),
    };
    let rewritten = serde_saphyr::to_string(&again.config).expect("serialises");
    assert_eq!(rewritten, written, "written form is not a fixpoint");
});
