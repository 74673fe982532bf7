//! What Warden's fuzz targets share: the reference model of OTP's supervisor, the
//! differential check of the core against it, and the checks of a live tree.

pub mod live;
pub mod otp;
pub mod supervisor;
