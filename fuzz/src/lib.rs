//! What Warden's fuzz targets share: the reference model of OTP's supervisor, and the
//! differential check of the core against it.

pub mod otp;
pub mod supervisor;
