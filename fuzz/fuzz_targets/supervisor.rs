//! The supervisor core against a reference model of OTP's rules (see
//! `warden_fuzz::supervisor`): random child exits, time and admin requests.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: warden_fuzz::supervisor::Input| {
    warden_fuzz::supervisor::check(&input);
});
