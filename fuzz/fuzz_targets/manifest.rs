//! The manifest loader: any text in, a spec or a list of problems out, never a panic or
//! a hang. A spec it accepts passes the supervisor's own validation; a refusal names
//! at least one problem, and every problem has its message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    let base = Path::new("/nonexistent/warden-fuzz");
    match warden::manifest::parse_with_settings("fuzz.toml", text, base) {
        Ok((spec, _)) => {
            let problems = warden::supervisor::validate("root", &spec);
            assert!(problems.is_empty(), "accepted, but invalid: {problems:?}\n{text}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "refused without a problem:\n{text}");
            for problem in &e.problems {
                assert!(!problem.to_string().is_empty(), "an empty problem:\n{text}");
            }
            let _ = e.to_string();
        }
    }
    // What `warden check` lists as the manifest's plugins, from any text.
    let _ = warden::manifest::plugin_files(text, base);
});
